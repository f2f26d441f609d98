//! A bare HTTP/1.1 server on loopback whose answers a test scripts per request, for
//! behaviours the fake GitHub has no reason to model (echoing credentials, endless bodies).

use std::sync::Arc;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// What the server saw of one request.
pub struct Seen {
    pub method: String,
    pub path: String,
    pub authorization: String,
}

/// How to answer: a complete response, or an endless chunked body after these headers.
pub enum Answer {
    Full { status: u16, headers: Vec<(String, String)>, body: String },
    Endless { status: u16 },
}

impl Answer {
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Answer::Full {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
        }
    }
}

/// Serves until the test ends; returns `http://127.0.0.1:PORT`.
pub async fn serve(answer: impl Fn(&Seen) -> Answer + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(connection(stream, answer.clone()));
        }
    });
    url
}

async fn connection(mut stream: TcpStream, answer: Arc<dyn Fn(&Seen) -> Answer + Send + Sync>) {
    loop {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1024];
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&byte[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        let mut lines = head.lines();
        let mut first = lines.next().unwrap_or_default().split(' ');
        let (method, path) =
            (first.next().unwrap_or_default().to_owned(), first.next().unwrap_or_default().to_owned());
        let mut authorization = String::new();
        let mut length = 0usize;
        for line in lines {
            if let Some((k, v)) = line.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "authorization" => authorization = v.trim().to_owned(),
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body_read = buf.len() - head_end;
        while body_read < length {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(n) => body_read += n,
            }
        }
        match answer(&Seen { method, path, authorization }) {
            Answer::Full { status, headers, body } => {
                let mut out = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
                for (k, v) in headers {
                    out += &format!("{k}: {v}\r\n");
                }
                out += "\r\n";
                out += &body;
                if stream.write_all(out.as_bytes()).await.is_err() {
                    return;
                }
            }
            Answer::Endless { status } => {
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "a".repeat(64 * 1024));
                // Bounded: 64 GiB would take far longer than any test; the client hangs up first.
                for _ in 0..(1u32 << 20) {
                    if stream.write_all(chunk.as_bytes()).await.is_err() {
                        return;
                    }
                }
                return;
            }
        }
    }
}
