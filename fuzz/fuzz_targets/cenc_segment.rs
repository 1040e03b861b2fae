#![no_main]
//! CMAF boxes as `hls::cenc` reads them: an init segment's `tenc`, a media
//! segment's `moof`/`trun`/`senc`. Never a panic, never a write outside
//! what parsed; a re-key there and back gives the input again.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = hls::cenc::track_encryption(data);
    for iv_size in [8, 16] {
        let tracks = [hls::cenc::TrackEncryption {
            track_id: 1,
            kid: [0; 16],
            iv_size,
        }];
        let mut segment = data.to_vec();
        if hls::cenc::rekey_segment(&mut segment, &tracks, &[1; 16], &[2; 16]).is_ok() {
            hls::cenc::rekey_segment(&mut segment, &tracks, &[2; 16], &[1; 16])
                .expect("what parsed once parses again");
            assert_eq!(segment, data);
        } else {
            assert_eq!(segment, data, "a refused segment is left as it was");
        }
    }
});
