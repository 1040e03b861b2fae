//! The verifier against each kind of tampering the issue names.

use super::*;

fn key() -> SigningKey {
    SigningKey::from_seed(&[7; 32])
}

fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

/// A writer's `n` records, checkpointed after every `every` records.
fn trail(writer: Uuid, n: u64, every: u64) -> (Vec<Row>, Vec<Checkpoint>) {
    let k = key();
    let mut chain = Chain::new(writer);
    let mut rows = Vec::new();
    let mut cps: Vec<Checkpoint> = Vec::new();
    for i in 1..=n {
        let canonical = canonical_json(
            &serde_json::json!({ "Id": i, "Op": "Decrypt", "Detail": { "b": 1, "a": 2 } }),
        );
        let link = chain.append(&canonical);
        rows.push(Row {
            link,
            canonical,
            id: format!("rec-{i}"),
        });
        if i % every == 0 {
            let cp = k.checkpoint("kms", &chain, cps.last(), t(i as i64));
            cps.push(cp);
        }
    }
    (rows, cps)
}

fn check(rows: &[Row], cps: &[Checkpoint]) -> Report {
    verify(rows, cps, None, &key().verifying_key())
}

/// Re-chains `rows` from scratch (an attacker with write access and no key).
fn rechain(rows: &mut [Row]) {
    let mut prev = GENESIS;
    for (i, r) in rows.iter_mut().enumerate() {
        r.link.seq = i as u64 + 1;
        r.link.prev = prev;
        r.link.hash = row_hash(r.link.writer, r.link.seq, &prev, &r.canonical);
        prev = r.link.hash;
    }
}

#[test]
fn an_untouched_trail_of_two_writers_is_clean() {
    let (mut rows, mut cps) = trail(Uuid::new_v4(), 25, 10);
    let (rows2, cps2) = trail(Uuid::new_v4(), 7, 3);
    rows.extend(rows2);
    cps.extend(cps2);
    rows.reverse(); // storage order does not matter
    let r = verify(&rows, &cps, Some(&cps), &key().verifying_key());
    assert!(r.clean(), "{:?}", r.problems);
    assert_eq!((r.writers, r.records, r.checkpoints), (2, 32, 4));
}

#[test]
fn an_edited_record_is_named() {
    let (mut rows, cps) = trail(Uuid::new_v4(), 20, 10);
    rows[4].canonical = canonical_json(&serde_json::json!({ "Id": 5, "Op": "Encrypt" }));
    let r = check(&rows, &cps);
    assert_eq!(
        r.problems.first(),
        Some(&Problem::Edited {
            writer: rows[4].link.writer,
            seq: 5,
            id: "rec-5".into()
        })
    );
}

#[test]
fn a_record_deleted_from_the_middle_leaves_a_gap() {
    let (mut rows, cps) = trail(Uuid::new_v4(), 20, 10);
    let w = rows[0].link.writer;
    rows.remove(6);
    let r = check(&rows, &cps);
    assert_eq!(
        r.problems.first(),
        Some(&Problem::Gap {
            writer: w,
            after: 6,
            next: 8
        })
    );
    // Renumbered to hide the gap: the links break.
    let (mut rows, cps) = trail(w, 20, 10);
    rows.remove(6);
    for r in rows.iter_mut().skip(6) {
        r.link.seq -= 1;
    }
    assert!(matches!(
        check(&rows, &cps).problems.first(),
        Some(Problem::Edited { seq: 7, .. })
    ));
}

#[test]
fn the_newest_records_deleted_are_caught_by_the_signed_head() {
    let (mut rows, cps) = trail(Uuid::new_v4(), 20, 10);
    let w = rows[0].link.writer;
    rows.truncate(15);
    let r = check(&rows, &cps);
    assert_eq!(
        r.problems,
        vec![Problem::Truncated {
            writer: w,
            signed_seq: 20,
            last_seq: 15
        }]
    );
}

#[test]
fn reordered_records_are_caught() {
    let (mut rows, cps) = trail(Uuid::new_v4(), 20, 10);
    // Swap two records' contents (each keeps its place's link).
    let c3 = rows[2].canonical.clone();
    rows[2].canonical = rows[3].canonical.clone();
    rows[3].canonical = c3;
    assert!(matches!(
        check(&rows, &cps).problems.first(),
        Some(Problem::Edited { seq: 3, .. })
    ));
    // Swap them whole, links and all.
    let (mut rows, cps) = trail(Uuid::new_v4(), 20, 10);
    let (a, b) = (rows[2].link.seq, rows[3].link.seq);
    rows[2].link.seq = b;
    rows[3].link.seq = a;
    assert!(!check(&rows, &cps).clean());
}

#[test]
fn a_forged_record_is_caught_inserted_plainly_or_rechained() {
    let (mut rows, cps) = trail(Uuid::new_v4(), 20, 10);
    let w = rows[0].link.writer;
    let forged = canonical_json(&serde_json::json!({ "Id": 99, "Op": "Decrypt" }));
    // At a taken place: a fork.
    let mut plain = rows.clone();
    plain.push(Row {
        link: Link {
            writer: w,
            seq: 8,
            prev: rows[6].link.hash,
            hash: row_hash(w, 8, &rows[6].link.hash, &forged),
        },
        canonical: forged.clone(),
        id: "forged".into(),
    });
    assert!(check(&plain, &cps)
        .problems
        .contains(&Problem::Fork { writer: w, seq: 8 }));
    // Inserted and the chain recomputed after it: the signed heads differ.
    rows.insert(
        7,
        Row {
            link: rows[7].link,
            canonical: forged,
            id: "forged".into(),
        },
    );
    rechain(&mut rows);
    let r = check(&rows, &cps);
    assert!(
        matches!(
            r.problems.first(),
            Some(Problem::HeadMismatch { seq: 10, .. })
        ),
        "{:?}",
        r.problems
    );
}

#[test]
fn a_whole_chain_replaced_by_a_recomputed_one_fails_its_signatures() {
    let (rows, cps) = trail(Uuid::new_v4(), 20, 10);
    let mut fake: Vec<Row> = rows
        .iter()
        .map(|r| Row {
            link: r.link,
            canonical: canonical_json(&serde_json::json!({ "Id": r.id, "Op": "Nothing" })),
            id: r.id.clone(),
        })
        .collect();
    rechain(&mut fake);
    assert!(matches!(
        check(&fake, &cps).problems.first(),
        Some(Problem::HeadMismatch { .. })
    ));
    // And checkpoints signed with another key do not verify.
    let other = SigningKey::from_seed(&[8; 32]);
    let mut chain = Chain::new(rows[0].link.writer);
    for r in &fake {
        chain.append(&r.canonical);
    }
    let forged_cp = other.checkpoint("kms", &chain, None, t(0));
    let r = check(&fake, &[forged_cp]);
    assert!(matches!(
        r.problems.first(),
        Some(Problem::BadSignature { number: 1, .. })
    ));
}

#[test]
fn checkpoints_must_chain_and_match_the_off_box_copy() {
    let (rows, cps) = trail(Uuid::new_v4(), 30, 10);
    // A checkpoint deleted from the database: the chain of checkpoints breaks,
    // and the copy names it.
    let mut fewer = cps.clone();
    fewer.remove(1);
    let r = verify(&rows, &fewer, Some(&cps), &key().verifying_key());
    assert!(r
        .problems
        .iter()
        .any(|p| matches!(p, Problem::CheckpointChain { number: 3, .. })));
    assert!(r
        .problems
        .iter()
        .any(|p| matches!(p, Problem::CopyMismatch { number: 2, .. })));
    // A field changed after signing.
    let mut altered = cps.clone();
    altered[0].seq = 9;
    assert!(matches!(
        check(&rows, &altered).problems.first(),
        Some(Problem::BadSignature { number: 1, .. })
    ));
}

#[test]
fn canonical_json_sorts_keys_at_every_level() {
    let a = serde_json::json!({ "b": [ { "z": 1, "a": 2 } ], "a": null });
    assert_eq!(
        canonical_json(&a),
        br#"{"a":null,"b":[{"a":2,"z":1}]}"#.to_vec()
    );
}

#[test]
fn keys_are_read_as_pem_or_base64_and_never_printed() {
    // openssl genpkey -algorithm ed25519 | openssl pkey -text: a fixed test seed.
    let seed = [0x42u8; 32];
    let der = [&PKCS8_PREFIX[..], &seed[..]].concat();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&der)
    );
    let from_pem = SigningKey::from_text(&pem).unwrap();
    let from_b64 =
        SigningKey::from_text(&base64::engine::general_purpose::STANDARD.encode(seed)).unwrap();
    assert_eq!(from_pem.verifying_key(), from_b64.verifying_key());
    assert!(!format!("{from_pem:?}").contains("42"));
    let public = verifying_key_from_text(&from_pem.public_pem()).unwrap();
    assert_eq!(public, from_pem.verifying_key());
    for bad in [
        "",
        "nope",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
    ] {
        assert_eq!(
            SigningKey::from_text(bad).err(),
            Some(KeyError::BadSigningKey)
        );
        assert_eq!(
            verifying_key_from_text(bad).err(),
            Some(KeyError::BadPublicKey)
        );
    }
}

#[test]
fn a_chain_without_any_checkpoint_is_unsigned() {
    let (rows, _) = trail(Uuid::new_v4(), 5, 10);
    let r = check(&rows, &[]);
    assert_eq!(
        r.problems,
        vec![Problem::Unsigned {
            writer: rows[0].link.writer,
            records: 5
        }]
    );
}

#[test]
fn a_writer_whose_records_are_all_gone_is_truncated_and_the_tail_is_told() {
    let (rows, cps) = trail(Uuid::new_v4(), 12, 5);
    let r = check(&[], &cps);
    assert_eq!(
        r.problems,
        vec![Problem::Truncated {
            writer: rows[0].link.writer,
            signed_seq: 10,
            last_seq: 0
        }]
    );
    let r = check(&rows, &cps);
    assert!(r.clean(), "{:?}", r.problems);
    assert_eq!(r.unsigned_tail, 2, "records 11 and 12 await a checkpoint");
}

#[test]
fn records_without_chain_fields_are_reported() {
    let (rows, cps) = trail(Uuid::new_v4(), 3, 3);
    let key = key().verifying_key();
    let mut v = Verifier::new(&cps, None, &key);
    for r in &rows {
        v.push(r);
    }
    v.push_unchained("forged-1");
    v.push_unchained("forged-2");
    let r = v.finish();
    assert_eq!(
        r.problems,
        vec![Problem::Unchained {
            count: 2,
            first_id: "forged-1".into()
        }]
    );
    assert_eq!(r.records, 5);
}

#[test]
fn a_written_private_pem_reads_back_as_the_same_key() {
    let k = key();
    let again = SigningKey::from_text(&k.private_pem()).unwrap();
    assert_eq!(again.verifying_key(), k.verifying_key());
    assert_eq!(
        verifying_key_from_text(&k.public_pem()).unwrap(),
        k.verifying_key()
    );
}

#[test]
fn a_record_appended_after_a_writers_last_checkpoint_is_forged() {
    let writer = Uuid::new_v4();
    let (mut rows, mut cps) = trail(writer, 6, 3);
    let k = key();
    let mut chain = Chain::new(writer);
    for r in &rows {
        chain.append(&r.canonical);
    }
    let last = k.checkpoint_at("kms", writer, chain.head(), cps.last(), t(7), true);
    cps.push(last);
    let r = check(&rows, &cps);
    assert!(r.clean(), "{:?}", r.problems);
    assert_eq!(r.unsigned_tail, 0);
    // An attacker who knows the format, but not the key, appends one more.
    let canonical = canonical_json(&serde_json::json!({ "Id": 7, "Op": "Decrypt" }));
    rows.push(Row {
        link: chain.append(&canonical),
        canonical,
        id: "forged".into(),
    });
    assert_eq!(
        check(&rows, &cps).problems,
        vec![Problem::AfterLast {
            writer,
            seq: 7,
            id: "forged".into()
        }]
    );
}
