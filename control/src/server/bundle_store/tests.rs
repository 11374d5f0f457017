//! The bundle store's two backends held to one contract — a put is
//! content-addressed and idempotent, a fetch streams back the same bytes, a
//! missing bundle is `Missing` naming it — the data dir on a temp dir and S3
//! on moto; and the refusals of `--bundle-store` and of a bucket that does
//! not answer.

use sha2::{Digest, Sha256};
use std::io::Read;

use tokio::io::AsyncReadExt;

use super::super::test_moto_s3::MotoS3;
use super::*;

/// Bytes spanning several reads (the agent service reads 1 MiB at a time).
fn payload(seed: u8) -> Vec<u8> {
    (0..3 * 1024 * 1024 + 17)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8 ^ seed)
        .collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A large upload as `Deploy` leaves it: a temp file in the staging dir.
fn upload(store: &BundleStore, bytes: &[u8]) -> Upload {
    let mut temp = tempfile::Builder::new()
        .prefix(".upload-")
        .tempfile_in(store.staging_dir())
        .unwrap();
    std::io::Write::write_all(&mut temp, bytes).unwrap();
    Upload::File(temp)
}

/// A small upload as `Deploy` leaves it: in memory.
fn in_memory(bytes: &[u8]) -> Upload {
    Upload::Memory(bytes.to_vec().into())
}

async fn read_all(mut reader: BundleReader) -> Vec<u8> {
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    out
}

/// The uploads (temp files) in the staging dir.
fn uploads_in(store: &BundleStore) -> Vec<String> {
    std::fs::read_dir(store.staging_dir())
        .unwrap()
        .filter_map(|entry| {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            name.starts_with(".upload-").then_some(name)
        })
        .collect()
}

/// The contract both backends keep.
async fn holds_the_contract(store: &BundleStore) {
    let bytes = payload(1);
    let sha256 = sha256_hex(&bytes);
    assert!(!store.exists(&sha256).await.unwrap());

    let first = store.put(upload(store, &bytes), &sha256).await.unwrap();
    assert_eq!(first, Stored::New);
    assert!(store.exists(&sha256).await.unwrap());
    let again = store.put(upload(store, &bytes), &sha256).await.unwrap();
    assert_eq!(
        again,
        Stored::AlreadyThere,
        "the same bundle was stored twice"
    );

    let fetched = read_all(store.open_bundle(&sha256).await.unwrap()).await;
    assert_eq!(fetched.len(), bytes.len());
    assert_eq!(sha256_hex(&fetched), sha256);

    // Concurrent deploys of one new bundle store it once (one write, one
    // sync); of different bundles, each.
    let same = payload(3);
    let same_sha = sha256_hex(&same);
    // Half of them small enough to arrive in memory.
    let puts = (0..8).map(|i| {
        let arrived = match i % 2 {
            0 => in_memory(&same),
            _ => upload(store, &same),
        };
        store.put(arrived, &same_sha)
    });
    let outcomes = futures::future::join_all(puts).await;
    let new = outcomes
        .iter()
        .filter(|outcome| matches!(outcome, Ok(Stored::New)))
        .count();
    assert_eq!(new, 1, "{outcomes:?}");
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let different: Vec<_> = (4..7)
        .map(payload)
        .map(|bytes| (sha256_hex(&bytes), bytes))
        .collect();
    let puts = different
        .iter()
        .map(|(sha256, bytes)| store.put(in_memory(bytes), sha256))
        .collect::<Vec<_>>();
    for outcome in futures::future::join_all(puts).await {
        assert_eq!(outcome.unwrap(), Stored::New);
    }
    assert!(
        store.inflight.0.lock().unwrap().is_empty(),
        "a finished put left its lock behind"
    );

    // No upload stays behind in the staging dir (the walker finds one
    // while it is there).
    let pending = upload(store, b"pending");
    assert_eq!(uploads_in(store).len(), 1);
    drop(pending);
    let leftovers = uploads_in(store);
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let absent = sha256_hex(&payload(2));
    assert!(!store.exists(&absent).await.unwrap());
    let err = match store.open_bundle(&absent).await {
        Ok(_) => panic!("a bundle never stored was opened"),
        Err(err) => err,
    };
    assert!(
        matches!(&err, BundleStoreError::Missing { sha256, .. } if *sha256 == absent),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&absent), "{message}");
    assert!(message.contains("deploy the service again"), "{message}");
}

/// What a spool left behind: its upload's bytes, and whether it used a file.
async fn spooled(chunks: &[&[u8]], staging: &std::path::Path) -> (Vec<u8>, bool) {
    let mut spool = Spool::default();
    for chunk in chunks {
        spool.write(chunk, staging).await.unwrap();
    }
    let upload = spool.finish().await.unwrap();
    let on_file = matches!(upload, Upload::File(_));
    let mut bytes = Vec::new();
    upload.reader().unwrap().read_to_end(&mut bytes).unwrap();
    (bytes, on_file)
}

#[tokio::test]
async fn a_small_upload_stays_in_memory_and_a_large_one_moves_to_a_file_whole() {
    let staging = tempfile::tempdir().unwrap();
    let files = || std::fs::read_dir(staging.path()).unwrap().count();
    let (small, on_file) = spooled(&[b"abc", b"def"], staging.path()).await;
    assert_eq!((small.as_slice(), on_file), (b"abcdef".as_slice(), false));
    assert_eq!(files(), 0, "a small upload created a file");

    let big = payload(9);
    let (first, rest) = big.split_at(upload::IN_MEMORY_BYTES - 5);
    let mut spool = Spool::default();
    spool.write(first, staging.path()).await.unwrap();
    assert_eq!(files(), 0, "still under the limit");
    spool.write(rest, staging.path()).await.unwrap();
    assert_eq!(files(), 1, "past the limit the upload is a file");
    let upload = spool.finish().await.unwrap();
    let mut bytes = Vec::new();
    upload.reader().unwrap().read_to_end(&mut bytes).unwrap();
    assert!(matches!(upload, Upload::File(_)));
    assert_eq!(sha256_hex(&bytes), sha256_hex(&big));
    drop(upload);
    assert_eq!(files(), 0, "the temp file outlived its upload");
}

#[tokio::test]
async fn the_data_dir_keeps_bundles_as_sha256_files_and_answers_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = BundleStore::open(&Location::DataDir, dir.path().to_owned(), None)
        .await
        .unwrap();
    holds_the_contract(&store).await;
    // On disk as before the S3 backend existed.
    let bytes = payload(1);
    let on_disk = std::fs::read(dir.path().join(format!("{}.tar.gz", sha256_hex(&bytes)))).unwrap();
    assert_eq!(on_disk, bytes);
    let message = store
        .open_bundle(&sha256_hex(b"x"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
}

#[tokio::test]
async fn s3_keeps_bundles_under_the_prefix_and_answers_the_contract() {
    let moto = MotoS3::shared();
    let bucket = moto.new_bucket();
    let location = Location::parse(&format!("s3://{bucket}/launch/bundles")).unwrap();
    let staging = tempfile::tempdir().unwrap();
    let aws = moto_aws(&moto.url());
    let store = BundleStore::open(&location, staging.path().to_owned(), Some(&aws))
        .await
        .unwrap();
    holds_the_contract(&store).await;
    let sha256 = sha256_hex(&payload(1));
    assert_eq!(
        moto.request("HEAD", &format!("/{bucket}/launch/bundles/{sha256}.tar.gz")),
        Ok(200)
    );
    // Nothing is kept on the local disk.
    assert_eq!(std::fs::read_dir(staging.path()).unwrap().count(), 0);
    let message = store
        .open_bundle(&sha256_hex(b"x"))
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        message.contains(&format!("s3://{bucket}/launch/bundles")),
        "{message}"
    );
    assert!(message.contains(&moto.url()), "{message}");
}

#[tokio::test]
async fn a_bucket_that_does_not_answer_is_refused_naming_it_and_the_endpoint() {
    let moto = MotoS3::shared();
    let bucket = moto.new_bucket();
    let staging = tempfile::tempdir().unwrap();
    let open = |location: &str, endpoint: String| {
        let location = Location::parse(location).unwrap();
        let staging = staging.path().to_owned();
        async move {
            BundleStore::open(&location, staging, Some(&moto_aws(&endpoint)))
                .await
                .map(|_| ())
        }
    };
    open(&format!("s3://{bucket}/p"), moto.url())
        .await
        .expect("an existing bucket opens");

    let missing = open("s3://no-such-bucket/p", moto.url())
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("\"no-such-bucket\""), "{missing}");
    assert!(missing.contains(&moto.url()), "{missing}");
    assert!(missing.contains("create the bucket"), "{missing}");

    let nobody = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let unreachable = open(&format!("s3://{bucket}"), nobody.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        unreachable.contains(&format!("\"{bucket}\"")),
        "{unreachable}"
    );
    assert!(unreachable.contains(&nobody), "{unreachable}");
    assert!(unreachable.contains("AWS_ENDPOINT_URL_S3"), "{unreachable}");
}

#[test]
fn bundle_store_flag_is_parsed_or_refused_saying_what_to_write() {
    let s3 = |bucket: &str, prefix: &str| {
        Location::S3(S3Location {
            bucket: bucket.into(),
            prefix: prefix.into(),
        })
    };
    let cases: &[(&str, Result<Location, &str>)] = &[
        ("s3://bundles", Ok(s3("bundles", ""))),
        ("s3://bundles/", Ok(s3("bundles", ""))),
        (
            "s3://my.bucket-1/launch/prod/",
            Ok(s3("my.bucket-1", "launch/prod")),
        ),
        ("/var/lib/bundles", Err("is not s3://BUCKET[/PREFIX]")),
        ("S3://bundles", Err("is not s3://BUCKET[/PREFIX]")),
        ("s3://", Err("is not an S3 bucket name")),
        ("s3://Bundles", Err("is not an S3 bucket name")),
        ("s3://ab", Err("is not an S3 bucket name")),
        ("s3://-bundles", Err("is not an S3 bucket name")),
        ("s3://bundles/a//b", Err("has an empty segment")),
        ("s3://bundles/a?versionId=1", Err("'?' or '#'")),
    ];
    for (text, expected) in cases {
        let parsed = Location::parse(text);
        match (expected, &parsed) {
            (Ok(location), Ok(got)) => assert_eq!(got, location, "{text}"),
            (Err(needle), Err(message)) => {
                assert!(message.contains(needle), "{text}: {message}");
                assert!(message.contains("s3://BUCKET"), "{text}: {message}");
            }
            _ => panic!("{text}: expected {expected:?}, got {parsed:?}"),
        }
    }
    assert_eq!(
        Location::parse("s3://bundles/launch").unwrap().to_string(),
        "s3://bundles/launch"
    );
}
