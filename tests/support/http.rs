//! A real HTTP/1.1 server on loopback that records every request, for the notification
//! tests: each path prefix answers with a status of the test's choice, or hangs (accepts
//! the request and never answers). Stopped on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query, as sent.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body of {} {} is not JSON ({e}): {}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
enum Reply {
    Status(u16, String),
    Hang,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Request>>,
    routes: Mutex<Vec<(String, Reply)>>,
    stop: AtomicBool,
}

pub struct HttpServer {
    pub port: u16,
    shared: Arc<Shared>,
}

impl HttpServer {
    /// Answers 200 to everything until told otherwise.
    pub fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    let s = s.clone();
                    std::thread::spawn(move || serve(stream, &s));
                }
            }
        });
        HttpServer { port, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Requests whose path starts with `prefix` get `status` and `body`.
    pub fn reply(&self, prefix: &str, status: u16, body: &str) {
        self.shared
            .routes
            .lock()
            .unwrap()
            .push((prefix.to_string(), Reply::Status(status, body.to_string())));
    }

    /// Requests whose path starts with `prefix` are read, recorded and never answered.
    pub fn hang(&self, prefix: &str) {
        self.shared
            .routes
            .lock()
            .unwrap()
            .push((prefix.to_string(), Reply::Hang));
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<Request> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn requests_to(&self, prefix: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    pub fn clear(&self) {
        self.shared.requests.lock().unwrap().clear();
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 {
            return;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let length: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let reply = shared
        .routes
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        .map(|(_, r)| r.clone())
        .unwrap_or(Reply::Status(200, "ok".into()));
    shared.requests.lock().unwrap().push(Request {
        method,
        path,
        headers,
        body,
        at: Instant::now(),
    });
    let mut stream = stream;
    match reply {
        Reply::Hang => {
            while !shared.stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        Reply::Status(code, text) => {
            let _ = write!(
                stream,
                "HTTP/1.1 {code} X\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.flush();
        }
    }
}
