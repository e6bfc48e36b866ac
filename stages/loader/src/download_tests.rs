use super::*;
use crate::testutil::{HttpServer, Received, Reply, TempDir, tar_gz};

/// Builds a small archive and a spec carrying the archive's MD5.
fn archive_and_spec() -> (Vec<u8>, ArchiveSpec) {
    // Pseudo-random bytes from a linear congruential generator, so gzip cannot shrink them.
    let mut state = 12345u32;
    let payload: Vec<u8> = (0..50_000)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 24) as u8
        })
        .collect();
    let archive = tar_gz(&[("cifar-10-batches-bin/readme.html", payload.as_slice())]);
    let md5 = format!("{:x}", Md5::digest(&archive));
    let spec = ArchiveSpec {
        file_name: "test-archive.tar.gz",
        md5: Box::leak(md5.into_boxed_str()),
    };
    (archive, spec)
}

fn no_request_range(path: &str) -> Received {
    Received {
        path: path.to_string(),
        range: None,
    }
}

#[test]
fn md5_hex_matches_known_vector() {
    let dir = TempDir::new("md5");
    let path = dir.path().join("abc");
    fs::write(&path, b"abc").unwrap();
    assert_eq!(md5_hex(&path).unwrap(), "900150983cd24fb0d6963f7d28e17f72");
}

#[test]
fn download_writes_verified_archive() {
    let (archive, spec) = archive_and_spec();
    let server = HttpServer::start(archive.clone(), vec![Reply::Serve]);
    let cache = TempDir::new("download-plain");

    let path = ensure_archive(&server.base_url(), &spec, cache.path()).unwrap();

    assert_eq!(path, cache.path().join("test-archive.tar.gz"));
    assert_eq!(fs::read(&path).unwrap(), archive);
    assert!(!cache.path().join("test-archive.tar.gz.part").exists());
    assert_eq!(
        server.received(),
        vec![no_request_range("/files/test-archive.tar.gz")]
    );
}

#[test]
fn download_resumes_broken_transfer() {
    let (archive, spec) = archive_and_spec();
    let half = archive.len() / 2;
    let server = HttpServer::start(archive.clone(), vec![Reply::BreakAfter(half), Reply::Serve]);
    let cache = TempDir::new("download-resume");

    let path = ensure_archive(&server.base_url(), &spec, cache.path()).unwrap();

    assert_eq!(fs::read(&path).unwrap(), archive);
    let received = server.received();
    assert_eq!(received.len(), 2, "{received:?}");
    assert_eq!(received[0].range, None);
    assert_eq!(received[1].range, Some(format!("bytes={half}-")));
}

#[test]
fn download_restarts_when_server_ignores_range() {
    let (archive, spec) = archive_and_spec();
    let server = HttpServer::start(archive.clone(), vec![Reply::IgnoreRange]);
    let cache = TempDir::new("download-ignore-range");
    fs::write(
        cache.path().join("test-archive.tar.gz.part"),
        &archive[..1000],
    )
    .unwrap();

    let path = ensure_archive(&server.base_url(), &spec, cache.path()).unwrap();

    assert_eq!(fs::read(&path).unwrap(), archive);
    assert_eq!(server.received()[0].range.as_deref(), Some("bytes=1000-"));
}

#[test]
fn download_replaces_stale_partial_file() {
    let (archive, spec) = archive_and_spec();
    let server = HttpServer::start(archive.clone(), vec![Reply::Serve]);
    let cache = TempDir::new("download-stale");
    // The first 1000 bytes of some other file: resuming after them gives a wrong MD5.
    fs::write(
        cache.path().join("test-archive.tar.gz.part"),
        vec![0xAB; 1000],
    )
    .unwrap();

    let path = ensure_archive(&server.base_url(), &spec, cache.path()).unwrap();

    assert_eq!(fs::read(&path).unwrap(), archive);
    let ranges: Vec<_> = server
        .received()
        .into_iter()
        .map(|request| request.range)
        .collect();
    assert_eq!(ranges, vec![Some("bytes=1000-".to_string()), None]);
}

#[test]
fn download_rejects_corrupted_archive() {
    let (mut archive, spec) = archive_and_spec();
    let middle = archive.len() / 2;
    archive[middle] ^= 0xFF;
    let server = HttpServer::start(archive.clone(), vec![Reply::Serve]);
    let cache = TempDir::new("download-corrupt");

    let error = ensure_archive(&server.base_url(), &spec, cache.path()).unwrap_err();

    let actual = format!("{:x}", Md5::digest(&archive));
    let url = format!("{}/test-archive.tar.gz", server.base_url());
    assert_eq!(
        error.to_string(),
        format!(
            "{url}: MD5 {actual} does not match the published {}; the download is corrupt and \
             was deleted, so retry, or check the `base_url` setting",
            spec.md5
        )
    );
    assert!(!cache.path().join("test-archive.tar.gz").exists());
    assert!(!cache.path().join("test-archive.tar.gz.part").exists());
}

#[test]
fn download_without_server_names_data_flag() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, spec) = archive_and_spec();
    let cache = TempDir::new("download-offline");

    let error =
        ensure_archive(&format!("http://127.0.0.1:{port}"), &spec, cache.path()).unwrap_err();

    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "download of http://127.0.0.1:{port}/test-archive.tar.gz failed: "
        )),
        "{message}"
    );
    assert!(message.contains("connection"), "{message}");
    assert!(
        message.ends_with("pass its folder with --data DIR"),
        "{message}"
    );
    assert!(!cache.path().join("test-archive.tar.gz").exists());
}

#[test]
fn download_reports_http_status() {
    let (archive, spec) = archive_and_spec();
    let server = HttpServer::start(archive, vec![Reply::Status(404)]);
    let cache = TempDir::new("download-404");

    let message = ensure_archive(&server.base_url(), &spec, cache.path())
        .unwrap_err()
        .to_string();

    assert!(message.contains("server answered HTTP 404"), "{message}");
}

#[test]
fn concurrent_downloads_fetch_once() {
    let (archive, spec) = archive_and_spec();
    let server = HttpServer::start(archive.clone(), vec![Reply::Serve]);
    let cache = TempDir::new("download-concurrent");
    let base_url = server.base_url();

    let paths: Vec<PathBuf> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..3)
            .map(|_| scope.spawn(|| ensure_archive(&base_url, &spec, cache.path()).unwrap()))
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap())
            .collect()
    });

    for path in &paths {
        assert_eq!(fs::read(path).unwrap(), archive);
    }
    assert_eq!(server.received().len(), 1);
}

#[test]
fn download_retries_after_server_error() {
    let (archive, spec) = archive_and_spec();
    let server = HttpServer::start(archive.clone(), vec![Reply::Status(503), Reply::Serve]);
    let cache = TempDir::new("download-503");

    let path = ensure_archive(&server.base_url(), &spec, cache.path()).unwrap();

    assert_eq!(fs::read(&path).unwrap(), archive);
    assert_eq!(server.received().len(), 2);
}

#[test]
fn download_gives_up_after_repeated_breaks() {
    let (archive, spec) = archive_and_spec();
    let server = HttpServer::start(archive, vec![Reply::BreakAfter(0)]);
    let cache = TempDir::new("download-breaks");

    let message = ensure_archive(&server.base_url(), &spec, cache.path())
        .unwrap_err()
        .to_string();

    assert!(message.contains("transfer broke off 4 times"), "{message}");
    assert_eq!(server.received().len(), MAX_ATTEMPTS);
    assert!(!cache.path().join("test-archive.tar.gz").exists());
}

#[test]
fn cached_archive_is_used_without_request() {
    let (archive, spec) = archive_and_spec();
    let server = HttpServer::start(archive, vec![Reply::Serve]);
    let cache = TempDir::new("download-cached");
    fs::write(cache.path().join("test-archive.tar.gz"), b"already here").unwrap();

    let path = ensure_archive(&server.base_url(), &spec, cache.path()).unwrap();

    assert_eq!(fs::read(path).unwrap(), b"already here");
    assert!(server.received().is_empty());
}

#[test]
fn cache_dir_prefers_ccssl_cache() {
    let some = |text: &str| Some(OsString::from(text));
    assert_eq!(
        cache_dir_from(some("/data/cache"), some("/home/u")),
        Some(PathBuf::from("/data/cache"))
    );
    assert_eq!(
        cache_dir_from(None, some("/home/u")),
        Some(PathBuf::from("/home/u/.cache/ccssl"))
    );
    assert_eq!(
        cache_dir_from(some(""), some("/home/u")),
        Some(PathBuf::from("/home/u/.cache/ccssl"))
    );
    assert_eq!(cache_dir_from(None, None), None);
}
