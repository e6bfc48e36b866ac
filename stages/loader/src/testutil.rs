//! Test fixtures: temporary directories, CIFAR files built byte by byte, and a small HTTP
//! server on 127.0.0.1 that serves an archive with scripted failures.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// A directory under the system temp dir, removed on drop.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(label: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "ccssl-loader-{label}-{}-{unique}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Pixel value of channel `channel` at plane offset `pixel` of test record `record`.
pub(crate) fn pattern_pixel(record: usize, channel: usize, pixel: usize) -> u8 {
    ((record * 31 + channel * 97 + pixel * 7) % 256) as u8
}

/// Binary CIFAR records with the given labels: `label_bytes` is 1 (CIFAR-10: the label) or 2
/// (CIFAR-100: coarse label 0, then the fine label), then the R, G, B planes of
/// [`pattern_pixel`], numbering records from `first`.
pub(crate) fn cifar_records(labels: &[u8], label_bytes: usize, first: usize) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (offset, &label) in labels.iter().enumerate() {
        if label_bytes == 2 {
            bytes.push(label / 5);
        }
        bytes.push(label);
        for channel in 0..3 {
            for pixel in 0..1024 {
                bytes.push(pattern_pixel(first + offset, channel, pixel));
            }
        }
    }
    bytes
}

/// Builds a `.tar.gz` containing `files` (path inside the archive, contents).
pub(crate) fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(encoder);
    for (path, contents) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(contents.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, path, *contents).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// Scripted response to one request.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Reply {
    /// Serves the body, honouring a `Range: bytes=N-` request with 206.
    Serve,
    /// Like `Serve`, but announces the full length and closes after this many body bytes.
    BreakAfter(usize),
    /// Serves the whole body with 200 whatever the request asked.
    IgnoreRange,
    /// Responds with this status and an empty body.
    Status(u16),
}

/// One request the server received: its path and its `Range` header, if any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) path: String,
    pub(crate) range: Option<String>,
}

/// An HTTP/1.1 server on 127.0.0.1 that responds to request `i` with `script[i]` (the last entry
/// for later ones) and records every request. It stops when dropped.
pub(crate) struct HttpServer {
    address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HttpServer {
    pub(crate) fn start(body: Vec<u8>, script: Vec<Reply>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (received, stop) = (received.clone(), stop.clone());
            std::thread::spawn(move || {
                for (index, stream) in listener.incoming().enumerate() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let reply = script[index.min(script.len() - 1)];
                    if let Some(request) = serve(stream, &body, reply) {
                        received.lock().unwrap().push(request);
                    }
                }
            })
        };
        Self {
            address,
            received,
            stop,
            thread: Some(thread),
        }
    }

    pub(crate) fn base_url(&self) -> String {
        format!("http://{}/files", self.address)
    }

    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so that it reads the flag.
        let _ = TcpStream::connect(self.address);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, body: &[u8], reply: Reply) -> Option<Received> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let path = request_line.split_whitespace().nth(1)?.to_string();
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("range")
        {
            range = Some(value.trim().to_string());
        }
    }

    let start = range
        .as_deref()
        .and_then(|range| range.strip_prefix("bytes="))
        .and_then(|range| range.strip_suffix('-'))
        .and_then(|start| start.parse::<usize>().ok());
    let mut stream = stream;
    let result = match reply {
        Reply::Status(status) => {
            write!(
                stream,
                "HTTP/1.1 {status} Scripted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )
        }
        Reply::IgnoreRange => send(&mut stream, 200, body, None, body.len()),
        Reply::Serve | Reply::BreakAfter(_) => {
            let limit = match reply {
                Reply::BreakAfter(limit) => limit,
                _ => usize::MAX,
            };
            match start {
                Some(start) if start >= body.len() => write!(
                    stream,
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n",
                    body.len()
                ),
                Some(start) => send(
                    &mut stream,
                    206,
                    &body[start..],
                    Some((start, body.len())),
                    limit,
                ),
                None => send(&mut stream, 200, body, None, limit),
            }
        }
    };
    result.ok()?;
    Some(Received { path, range })
}

fn send(
    stream: &mut TcpStream,
    status: u16,
    body: &[u8],
    range: Option<(usize, usize)>,
    limit: usize,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some((start, total)) = range {
        head += &format!("Content-Range: bytes {start}-{}/{total}\r\n", total - 1);
    }
    head += "Connection: close\r\n\r\n";
    stream.write_all(head.as_bytes())?;
    stream.write_all(&body[..limit.min(body.len())])?;
    stream.flush()?;
    stream.shutdown(std::net::Shutdown::Both)
}
