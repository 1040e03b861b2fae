#![no_main]
//! EncryptionContext as Python prints a dict (what aliyun-python-sdk-kms
//! sends when handed one): parsing never panics, and what it reads, printed
//! back as Python would (repr of str), reads the same.

use libfuzzer_sys::fuzz_target;

fn py_repr(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(ctx) = kms_api::context::parse_python_dict(text) {
        let printed: Vec<String> = ctx
            .iter()
            .map(|(k, v)| format!("{}: {}", py_repr(k), py_repr(v)))
            .collect();
        let again = kms_api::context::parse_python_dict(&format!("{{{}}}", printed.join(", ")));
        assert_eq!(again, Some(ctx));
    }
});
