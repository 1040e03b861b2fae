//! DASH MPDs from the origin folder, as players need them for Clear Key:
//! the KIDs a manifest names, and a Clear Key ContentProtection element
//! (with the licence URL in `dashif:Laurl`) beside each CENC one. Text
//! surgery on the packager's output, no XML rewrite: what is not ours stays
//! byte for byte.

use crate::service::parse_kid;

/// The W3C Clear Key system id, as DASH names it.
pub const CLEAR_KEY_SCHEME: &str = "urn:uuid:e2719d58-a985-b3c9-781a-b030af78d30e";
const DASHIF_NS: &str = "https://dashif.org/CPS";

/// Every `default_KID` of the MPD (`cenc:default_KID="UUID"`), each once.
pub fn default_kids(mpd: &str) -> Vec<[u8; 16]> {
    let mut out: Vec<[u8; 16]> = Vec::new();
    let mut rest = mpd;
    while let Some(at) = rest.find("default_KID=\"") {
        rest = &rest[at + "default_KID=\"".len()..];
        let Some(end) = rest.find('"') else { break };
        if let Some(kid) = parse_kid(rest[..end].trim()) {
            if !out.contains(&kid) {
                out.push(kid);
            }
        }
        rest = &rest[end..];
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The MPD with a Clear Key ContentProtection after each CENC
/// (`urn:mpeg:dash:mp4protection:2011`) one, its `dashif:Laurl` the licence
/// URL. A manifest that already names Clear Key is left as it is.
pub fn with_clear_key(mpd: &str, licence_url: &str) -> String {
    if mpd.contains(CLEAR_KEY_SCHEME) {
        return mpd.to_owned();
    }
    let element = format!(
        "<ContentProtection schemeIdUri=\"{CLEAR_KEY_SCHEME}\" value=\"ClearKey1.0\">\
         <dashif:Laurl>{}</dashif:Laurl></ContentProtection>",
        xml_escape(licence_url)
    );
    let mut out = String::with_capacity(mpd.len() + 512);
    let mut rest = mpd;
    while let Some(at) = rest.find("<ContentProtection") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let Some(tag_end) = from.find('>') else {
            rest = from;
            break;
        };
        let start_tag = &from[..=tag_end];
        let end = if start_tag.ends_with("/>") {
            tag_end + 1
        } else {
            match from.find("</ContentProtection>") {
                Some(close) => close + "</ContentProtection>".len(),
                None => tag_end + 1,
            }
        };
        out.push_str(&from[..end]);
        if start_tag
            .to_ascii_lowercase()
            .contains("urn:mpeg:dash:mp4protection:2011")
        {
            out.push_str(&element);
        }
        rest = &from[end..];
    }
    out.push_str(rest);
    // The prefix of dashif:Laurl, declared on the root element.
    if !out.contains(&format!("xmlns:dashif=\"{DASHIF_NS}\"")) {
        if let Some(at) = out.find("<MPD") {
            out.insert_str(at + 4, &format!(" xmlns:dashif=\"{DASHIF_NS}\""));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MPD: &str = r#"<?xml version="1.0"?>
<MPD xmlns="urn:mpeg:dash:schema:mpd:2011" xmlns:cenc="urn:mpeg:cenc:2013">
  <Period><AdaptationSet>
      <ContentProtection value="cenc" schemeIdUri="urn:mpeg:dash:mp4protection:2011" cenc:default_KID="00112233-4455-6677-8899-aabbccddeeff"/>
      <ContentProtection schemeIdUri="urn:uuid:1077efec-c0b2-4d02-ace3-3c1e52e2fb4b">
        <cenc:pssh>AAAA</cenc:pssh>
      </ContentProtection>
  </AdaptationSet><AdaptationSet>
      <ContentProtection value="cenc" schemeIdUri="urn:mpeg:dash:mp4protection:2011" cenc:default_KID="00112233-4455-6677-8899-aabbccddeeff"/>
  </AdaptationSet></Period>
</MPD>"#;

    #[test]
    fn kids_and_clear_key_elements() {
        assert_eq!(
            default_kids(MPD),
            vec![[
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]]
        );
        let out = with_clear_key(MPD, "https://b.example/v1/clearkey/license?token=a&b");
        assert_eq!(out.matches(CLEAR_KEY_SCHEME).count(), 2, "{out}");
        assert!(out.contains(
            "<dashif:Laurl>https://b.example/v1/clearkey/license?token=a&amp;b</dashif:Laurl>"
        ));
        assert!(out.contains("<MPD xmlns:dashif=\"https://dashif.org/CPS\" xmlns="));
        // The Clear Key element follows the CENC one; the PSSH one is kept.
        let cenc = out.find("mp4protection").unwrap();
        let clear = out.find(CLEAR_KEY_SCHEME).unwrap();
        let pssh = out.find("1077efec").unwrap();
        assert!(cenc < clear && clear < pssh, "{out}");
        // Idempotent on its own output.
        assert_eq!(with_clear_key(&out, "x"), out);
        assert!(default_kids("<MPD/>").is_empty());
    }
}
