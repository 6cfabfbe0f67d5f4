//! `weft server` and `weft worker` as processes, and a small HTTP client
//! for their API.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{Workspace, wait_until};

/// A `weft server` or `weft worker` process, its output drained so that it
/// never blocks on a full pipe.
pub struct Service {
    child: Child,
    stderr: Arc<Mutex<String>>,
    pub stdout: Arc<Mutex<String>>,
}

impl Service {
    pub fn start(ws: &Workspace, args: &[&str]) -> Service {
        let mut child = ws.weft().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let drain = |pipe: Box<dyn Read + Send>| {
            let kept = Arc::new(Mutex::new(String::new()));
            let into = kept.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut kept = into.lock().unwrap();
                    kept.push_str(&line);
                    kept.push('\n');
                }
            });
            kept
        };
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        Service { child, stderr, stdout }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// The server's address, once it listens.
    pub async fn address(&self) -> String {
        let mut address = String::new();
        wait_until("the server to listen", Duration::from_secs(60), || {
            let stderr = self.stderr();
            let found = stderr.lines().find_map(|l| l.strip_prefix("weft server listening on http://"));
            address = found.map(|rest| rest.split_whitespace().next().unwrap().to_string()).unwrap_or_default();
            !address.is_empty()
        })
        .await;
        address
    }

    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request; returns the status and the body (JSON, or a JSON
/// string for text).
pub async fn http(address: &str, method: &str, path: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let auth = key.map(|k| format!("authorization: Bearer {k}\r\n")).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\n{auth}content-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    socket.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.to_string()));
    // 503 is the answer while the database is out of reach; other 5xx are bugs.
    assert!(status < 500 || status == 503, "{method} {path}: {status} {body}");
    (status, body)
}

/// A tenant with a developer key, made with the super-admin key; returns
/// the developer key.
pub async fn tenant(address: &str, admin: &str, id: &str) -> String {
    let (status, _) = http(address, "POST", "/v1/tenants", Some(admin), Some(json!({ "id": id }))).await;
    assert_eq!(status, 201);
    let path = format!("/v1/tenants/{id}/api-keys");
    let (status, made) =
        http(address, "POST", &path, Some(admin), Some(json!({ "name": "ci", "role": "developer" }))).await;
    assert_eq!(status, 201, "{made}");
    made["secret"].as_str().unwrap().to_string()
}

pub async fn store_workflow(address: &str, key: &str, workflow: &Value) -> String {
    let source = serde_json::to_string_pretty(workflow).unwrap();
    let (status, created) = http(address, "POST", "/v1/workflows", Some(key), Some(json!({ "source": source }))).await;
    assert_eq!(status, 201, "{created}");
    created["workflow"]["hash"].as_str().unwrap().to_string()
}

/// The first line the server printed on stdout: the bootstrap key.
pub async fn bootstrap_key(server: &Service) -> String {
    let mut key = String::new();
    wait_until("the bootstrap key", Duration::from_secs(30), || {
        key = server.stdout.lock().unwrap().lines().next().unwrap_or_default().to_string();
        !key.is_empty()
    })
    .await;
    assert!(key.starts_with("weft_"), "{key}");
    key
}
