//! Playlists from the origin folder, cut into templates: never a panic, and
//! every token written sits in a URI the targets accept.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let targets = hls::rewrite::TokenTargets::new(&["https://keys.example".to_owned()]).unwrap();
    for line in text.lines() {
        let _ = targets.key_uri("/v1/hls/playlist/v/index.m3u8", line);
        let _ = targets.playlist_uri("/v1/hls/playlist/v/index.m3u8", line);
    }
    let Ok(playlist) = hls::playlist::Playlist::parse(text) else {
        return;
    };
    if let Ok(template) = hls::rewrite::Template::new(
        &playlist,
        &targets,
        "/v1/hls/playlist/v/index.m3u8",
        hls::rewrite::CencKeyTags::Identity,
    ) {
        let out = template.render("T0KEN");
        assert!(out.matches("T0KEN").count() >= template.media_playlists.len());
    }
});
