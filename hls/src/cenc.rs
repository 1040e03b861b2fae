//! CENC `cenc` (AES-CTR, ISO/IEC 23001-7) fragmented MP4, re-keyed in
//! place. Every byte range a fragment's `senc` box marks as protected is
//! run through the old key's keystream and then the new key's. Boxes,
//! IVs, subsample maps and KIDs stay as the packager wrote them, so CMAF
//! packaged once (Shaka Packager, under a key that is no secret) can be put
//! under a fresh data key without a packager. `cbcs` (AES-CBC with a
//! pattern) is refused: re-keying it is not a keystream swap.

use std::ops::Range;

use aes::cipher::{KeyIvInit as _, StreamCipher as _};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Input that is not CENC `cenc` fragmented MP4 as this module reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CencError(String);

fn bad<T>(why: impl Into<String>) -> Result<T, CencError> {
    Err(CencError(why.into()))
}

/// What an init segment's `tenc` says about one encrypted track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackEncryption {
    pub track_id: u32,
    pub kid: [u8; 16],
    /// Bytes of per-sample IV in `senc`: 8 or 16.
    pub iv_size: u8,
}

/// A box: its four-character type and where its body lies in the buffer.
struct Mp4Box {
    kind: [u8; 4],
    start: usize,
    body: Range<usize>,
}

/// The boxes that fill `range` of `data`, in order.
fn children(data: &[u8], range: Range<usize>) -> Result<Vec<Mp4Box>, CencError> {
    let mut out = Vec::new();
    let mut at = range.start;
    while at < range.end {
        let mut r = Reader::new(data, at..range.end);
        let size32 = r.u32()?;
        let kind: [u8; 4] = r.array()?;
        let (header, size) = match size32 {
            0 => (8, (range.end - at) as u64),
            1 => (16, r.u64()?),
            n => (8, u64::from(n)),
        };
        let end = usize::try_from(size)
            .ok()
            .and_then(|s| at.checked_add(s))
            .filter(|&end| size >= header && end <= range.end);
        let Some(end) = end else {
            return bad(format!(
                "box {:?} at byte {at} runs past its parent",
                String::from_utf8_lossy(&kind)
            ));
        };
        out.push(Mp4Box {
            kind,
            start: at,
            body: at + header as usize..end,
        });
        at = end;
    }
    Ok(out)
}

fn child<'b>(boxes: &'b [Mp4Box], kind: &[u8; 4]) -> Option<&'b Mp4Box> {
    boxes.iter().find(|b| &b.kind == kind)
}

/// Big-endian fields of a box body, bounds-checked.
struct Reader<'a> {
    data: &'a [u8],
    at: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8], range: Range<usize>) -> Self {
        Self {
            data,
            at: range.start,
            end: range.end.min(data.len()),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CencError> {
        match self.at.checked_add(n).filter(|&e| e <= self.end) {
            Some(e) => {
                let out = &self.data[self.at..e];
                self.at = e;
                Ok(out)
            }
            None => bad(format!("a box ends early (byte {})", self.at)),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CencError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, CencError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, CencError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, CencError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, CencError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A full box's version and flags.
    fn version_flags(&mut self) -> Result<(u8, u32), CencError> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }
}

/// Bytes of a sample entry's fixed fields before its child boxes.
const VISUAL_ENTRY_FIELDS: usize = 78;
const AUDIO_ENTRY_FIELDS: usize = 28;

/// The encrypted tracks of an init segment (`moov`), as their `tenc` boxes
/// say. Tracks whose scheme is not `cenc` are refused.
pub fn track_encryption(init: &[u8]) -> Result<Vec<TrackEncryption>, CencError> {
    let top = children(init, 0..init.len())?;
    let Some(moov) = child(&top, b"moov") else {
        return bad("the init segment has no moov box");
    };
    let mut out = Vec::new();
    for trak in children(init, moov.body.clone())?
        .iter()
        .filter(|b| &b.kind == b"trak")
    {
        let trak_boxes = children(init, trak.body.clone())?;
        let Some(tkhd) = child(&trak_boxes, b"tkhd") else {
            return bad("a track has no tkhd box");
        };
        let mut r = Reader::new(init, tkhd.body.clone());
        let (version, _) = r.version_flags()?;
        r.take(if version == 1 { 16 } else { 8 })?;
        let track_id = r.u32()?;
        let Some(stsd) = descend(init, &trak_boxes, &[b"mdia", b"minf", b"stbl", b"stsd"])? else {
            continue;
        };
        let mut r = Reader::new(init, stsd.clone());
        r.version_flags()?;
        let _entries = r.u32()?;
        for entry in children(init, r.at..stsd.end)? {
            let fields = match &entry.kind {
                b"encv" => VISUAL_ENTRY_FIELDS,
                b"enca" => AUDIO_ENTRY_FIELDS,
                _ => continue,
            };
            let inner = entry.body.start.saturating_add(fields)..entry.body.end;
            if inner.start > inner.end {
                return bad("a protected sample entry ends early");
            }
            let entry_boxes = children(init, inner)?;
            let Some(sinf) = child(&entry_boxes, b"sinf") else {
                return bad("a protected sample entry has no sinf box");
            };
            out.push(read_sinf(init, sinf, track_id)?);
        }
    }
    if out.is_empty() {
        return bad("the init segment has no encrypted track (encv or enca)");
    }
    Ok(out)
}

/// Follows `path` down from `boxes`; the last box's body, if all are there.
fn descend(
    data: &[u8],
    boxes: &[Mp4Box],
    path: &[&[u8; 4]],
) -> Result<Option<Range<usize>>, CencError> {
    let Some((first, rest)) = path.split_first() else {
        return Ok(None);
    };
    let Some(found) = child(boxes, first) else {
        return Ok(None);
    };
    if rest.is_empty() {
        return Ok(Some(found.body.clone()));
    }
    descend(data, &children(data, found.body.clone())?, rest)
}

fn read_sinf(data: &[u8], sinf: &Mp4Box, track_id: u32) -> Result<TrackEncryption, CencError> {
    let boxes = children(data, sinf.body.clone())?;
    let Some(schm) = child(&boxes, b"schm") else {
        return bad("sinf has no schm box");
    };
    let mut r = Reader::new(data, schm.body.clone());
    r.version_flags()?;
    let scheme: [u8; 4] = r.array()?;
    if &scheme != b"cenc" {
        return bad(format!(
            "the protection scheme is {:?}; only \"cenc\" can be re-keyed",
            String::from_utf8_lossy(&scheme)
        ));
    }
    let Some(tenc) = descend(data, &boxes, &[b"schi", b"tenc"])? else {
        return bad("sinf has no schi/tenc box");
    };
    let mut r = Reader::new(data, tenc);
    r.version_flags()?;
    r.take(2)?;
    let protected = r.u8()?;
    let iv_size = r.u8()?;
    let kid = r.array()?;
    if protected != 1 || !matches!(iv_size, 8 | 16) {
        return bad(format!(
            "tenc: protected {protected}, IV size {iv_size}: only per-sample IVs of 8 or 16 bytes are handled"
        ));
    }
    Ok(TrackEncryption {
        track_id,
        kid,
        iv_size,
    })
}

/// One sample's IV and the byte ranges (in the segment) it encrypts, in
/// keystream order.
struct ProtectedSample {
    iv: [u8; 16],
    ranges: Vec<Range<usize>>,
}

// tfhd flags.
const BASE_DATA_OFFSET: u32 = 0x01;
const SAMPLE_DESCRIPTION_INDEX: u32 = 0x02;
const DEFAULT_DURATION: u32 = 0x08;
const DEFAULT_SIZE: u32 = 0x10;
const DEFAULT_BASE_IS_MOOF: u32 = 0x2_0000;
// trun flags.
const DATA_OFFSET: u32 = 0x01;
const FIRST_SAMPLE_FLAGS: u32 = 0x04;
const SAMPLE_DURATION: u32 = 0x100;
const SAMPLE_SIZE: u32 = 0x200;
const SAMPLE_FLAGS: u32 = 0x400;
const SAMPLE_CTO: u32 = 0x800;
// senc flags.
const USE_SUBSAMPLES: u32 = 0x02;

/// Every protected sample of a media segment (`moof` + `mdat` pairs).
fn protected_samples(
    segment: &[u8],
    tracks: &[TrackEncryption],
) -> Result<Vec<ProtectedSample>, CencError> {
    let mut out = Vec::new();
    let top = children(segment, 0..segment.len())?;
    // Samples must lie in media data: re-keying never touches a box header.
    let mdats: Vec<Range<usize>> = top
        .iter()
        .filter(|b| &b.kind == b"mdat")
        .map(|b| b.body.clone())
        .collect();
    for moof in top.iter().filter(|b| &b.kind == b"moof") {
        let trafs = children(segment, moof.body.clone())?;
        for (i, traf) in trafs.iter().filter(|b| &b.kind == b"traf").enumerate() {
            let boxes = children(segment, traf.body.clone())?;
            let Some(tfhd) = child(&boxes, b"tfhd") else {
                return bad("a traf has no tfhd box");
            };
            let mut r = Reader::new(segment, tfhd.body.clone());
            let (_, flags) = r.version_flags()?;
            let track_id = r.u32()?;
            let base = if flags & BASE_DATA_OFFSET != 0 {
                usize::try_from(r.u64()?).map_err(|_| CencError("base offset too large".into()))?
            } else if flags & DEFAULT_BASE_IS_MOOF != 0 || i == 0 {
                moof.start
            } else {
                return bad("a second traf without a base offset is not handled");
            };
            if flags & SAMPLE_DESCRIPTION_INDEX != 0 {
                r.u32()?;
            }
            if flags & DEFAULT_DURATION != 0 {
                r.u32()?;
            }
            let default_size = if flags & DEFAULT_SIZE != 0 {
                Some(r.u32()?)
            } else {
                None
            };
            let Some(track) = tracks.iter().find(|t| t.track_id == track_id) else {
                continue;
            };
            // Samples without senc (a clear lead) are left alone.
            let Some(senc) = child(&boxes, b"senc") else {
                continue;
            };
            let samples = sample_ranges(segment, &boxes, base, default_size)?;
            if let Some(stray) = samples
                .iter()
                .find(|r| !mdats.iter().any(|m| m.start <= r.start && r.end <= m.end))
            {
                return bad(format!(
                    "a sample (bytes {stray:?}) lies outside every mdat box"
                ));
            }
            read_senc(segment, senc, track, &samples, &mut out)?;
        }
    }
    Ok(out)
}

/// Where each sample of a traf's `trun` boxes lies in the segment.
fn sample_ranges(
    segment: &[u8],
    boxes: &[Mp4Box],
    base: usize,
    default_size: Option<u32>,
) -> Result<Vec<Range<usize>>, CencError> {
    let mut out = Vec::new();
    let mut next = base;
    for trun in boxes.iter().filter(|b| &b.kind == b"trun") {
        let mut r = Reader::new(segment, trun.body.clone());
        let (_, flags) = r.version_flags()?;
        let count = r.u32()?;
        if flags & DATA_OFFSET != 0 {
            // Signed in version 1, and in practice never negative.
            let offset = r.u32()? as i32;
            next = base
                .checked_add_signed(offset as isize)
                .ok_or_else(|| CencError("trun data offset out of range".into()))?;
        }
        if flags & FIRST_SAMPLE_FLAGS != 0 {
            r.u32()?;
        }
        for _ in 0..count {
            if flags & SAMPLE_DURATION != 0 {
                r.u32()?;
            }
            let size = if flags & SAMPLE_SIZE != 0 {
                r.u32()?
            } else {
                default_size
                    .ok_or_else(|| CencError("sample sizes are in neither trun nor tfhd".into()))?
            };
            if flags & SAMPLE_FLAGS != 0 {
                r.u32()?;
            }
            if flags & SAMPLE_CTO != 0 {
                r.u32()?;
            }
            let end = next
                .checked_add(size as usize)
                .filter(|&e| e <= segment.len())
                .ok_or_else(|| CencError("a sample runs past the segment".into()))?;
            out.push(next..end);
            next = end;
        }
    }
    Ok(out)
}

fn read_senc(
    segment: &[u8],
    senc: &Mp4Box,
    track: &TrackEncryption,
    samples: &[Range<usize>],
    out: &mut Vec<ProtectedSample>,
) -> Result<(), CencError> {
    let mut r = Reader::new(segment, senc.body.clone());
    let (_, flags) = r.version_flags()?;
    let count = r.u32()?;
    if count as usize != samples.len() {
        return bad(format!(
            "senc names {count} samples, trun {}",
            samples.len()
        ));
    }
    for sample in samples {
        let mut iv = [0u8; 16];
        iv[..usize::from(track.iv_size)].copy_from_slice(r.take(usize::from(track.iv_size))?);
        let mut ranges = Vec::new();
        if flags & USE_SUBSAMPLES != 0 {
            let mut at = sample.start;
            for _ in 0..r.u16()? {
                let clear = usize::from(r.u16()?);
                let protected = r.u32()? as usize;
                let start = at.saturating_add(clear);
                let end = start.saturating_add(protected);
                if end > sample.end {
                    return bad("subsamples run past their sample");
                }
                if protected > 0 {
                    ranges.push(start..end);
                }
                at = end;
            }
        } else {
            ranges.push(sample.clone());
        }
        out.push(ProtectedSample { iv, ranges });
    }
    Ok(())
}

/// Re-keys a `cenc` media segment in place from `from` to `to`, for the
/// tracks `tracks` (from [`track_encryption`] of its init segment). Nothing
/// is changed unless the whole segment reads correctly.
pub fn rekey_segment(
    segment: &mut [u8],
    tracks: &[TrackEncryption],
    from: &[u8; 16],
    to: &[u8; 16],
) -> Result<(), CencError> {
    let samples = protected_samples(segment, tracks)?;
    for sample in &samples {
        for key in [from, to] {
            let mut cipher = Aes128Ctr::new(key.into(), &sample.iv.into());
            // The keystream runs on across a sample's subsamples.
            for range in &sample.ranges {
                cipher.apply_keystream(&mut segment[range.clone()]);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp4_box(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut out = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        out
    }

    fn full(kind: &[u8; 4], flags: u32, body: &[u8]) -> Vec<u8> {
        let mut b = flags.to_be_bytes().to_vec();
        b.extend_from_slice(body);
        mp4_box(kind, &b)
    }

    /// One traf of track 7 with two samples (10 and 6 bytes): the first in
    /// two subsamples (2 clear + 5 protected, 1 clear + 2 protected), the
    /// second all protected.
    fn segment(payload: &[u8; 16]) -> Vec<u8> {
        let tfhd = full(b"tfhd", DEFAULT_BASE_IS_MOOF, &7u32.to_be_bytes());
        let mut senc_body = 2u32.to_be_bytes().to_vec();
        senc_body.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        senc_body.extend_from_slice(&2u16.to_be_bytes());
        senc_body.extend_from_slice(&[0, 2, 0, 0, 0, 5, 0, 1, 0, 0, 0, 2]);
        senc_body.extend_from_slice(&[9, 9, 9, 9, 9, 9, 9, 9]);
        senc_body.extend_from_slice(&1u16.to_be_bytes());
        senc_body.extend_from_slice(&[0, 0, 0, 0, 0, 6]);
        let senc = full(b"senc", USE_SUBSAMPLES, &senc_body);
        let build = |data_offset: u32| {
            let mut trun_body = 2u32.to_be_bytes().to_vec();
            trun_body.extend_from_slice(&data_offset.to_be_bytes());
            trun_body.extend_from_slice(&10u32.to_be_bytes());
            trun_body.extend_from_slice(&6u32.to_be_bytes());
            let trun = full(b"trun", DATA_OFFSET | SAMPLE_SIZE, &trun_body);
            let traf = mp4_box(b"traf", &[tfhd.clone(), trun, senc.clone()].concat());
            mp4_box(b"moof", &traf)
        };
        let moof_len = build(0).len() as u32;
        let mut out = build(moof_len + 8);
        out.extend(mp4_box(b"mdat", payload));
        out
    }

    /// `data` through the keystreams of `keys` for one sample's IV.
    fn keystreams(keys: &[&[u8; 16]], iv8: [u8; 8], data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        let mut iv = [0u8; 16];
        iv[..8].copy_from_slice(&iv8);
        for key in keys {
            Aes128Ctr::new((*key).into(), &iv.into()).apply_keystream(&mut out);
        }
        out
    }

    #[test]
    fn rekeying_swaps_the_keystream_of_protected_bytes_only() {
        let tracks = [TrackEncryption {
            track_id: 7,
            kid: [0; 16],
            iv_size: 8,
        }];
        let plain: [u8; 16] = core::array::from_fn(|i| i as u8);
        let mut seg = segment(&plain);
        let mdat = seg.len() - 16;
        let (k1, k2) = ([1u8; 16], [2u8; 16]);
        rekey_segment(&mut seg, &tracks, &k1, &k2).unwrap();
        let got = &seg[mdat..];
        // Clear bytes stay; the keystream runs on across subsamples.
        assert_eq!((got[0], got[1], got[7]), (0, 1, 7));
        let first: Vec<u8> = [&got[2..7], &got[8..10]].concat();
        let expected = keystreams(
            &[&k1, &k2],
            [1, 2, 3, 4, 5, 6, 7, 8],
            &[2, 3, 4, 5, 6, 8, 9],
        );
        assert_eq!(first, expected);
        let expected = keystreams(&[&k1, &k2], [9; 8], &plain[10..]);
        assert_eq!(&got[10..], &expected[..]);
        // Back again: the original bytes.
        rekey_segment(&mut seg, &tracks, &k2, &k1).unwrap();
        assert_eq!(&seg[mdat..], &plain);
    }

    #[test]
    fn broken_segments_are_errors_and_change_nothing() {
        let tracks = [TrackEncryption {
            track_id: 7,
            kid: [0; 16],
            iv_size: 8,
        }];
        let good = segment(&[0; 16]);
        for cut in [1, 7, 20, 40, good.len() - 17] {
            let mut seg = good[..cut].to_vec();
            let before = seg.clone();
            assert!(
                rekey_segment(&mut seg, &tracks, &[1; 16], &[2; 16]).is_err(),
                "cut {cut}"
            );
            assert_eq!(seg, before);
        }
        // Another track's fragments are left alone.
        let other = [TrackEncryption {
            track_id: 8,
            ..tracks[0].clone()
        }];
        let mut seg = good.clone();
        rekey_segment(&mut seg, &other, &[1; 16], &[2; 16]).unwrap();
        assert_eq!(seg, good);
        assert!(track_encryption(&good).is_err());
        assert!(track_encryption(&[0, 0, 0, 1]).is_err());
    }
}
