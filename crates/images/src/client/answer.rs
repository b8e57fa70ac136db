//! Reading a registry's answer: which statuses a call accepts, the error text
//! kept from the others, and bodies read whole only under a size cap.
//!
//! `execute` returns every answer whatever its status, because what counts as
//! success depends on the call (a `404` is `false` for a blob `HEAD` and an
//! error for an upload). An error body is kept verbatim but cut at
//! [`MAX_ERROR_BODY`], so a registry cannot fill a log line or the memory.

use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};

use super::{Call, RegistryError};

/// How much of a registry's error body an error message keeps.
const MAX_ERROR_BODY: usize = 4096;

/// Checks the status is one of `ok`, or turns the answer into an error.
pub(super) async fn expect(
    call: &Call<'_>,
    response: Response,
    ok: &[StatusCode],
) -> Result<Response, RegistryError> {
    if ok.contains(&response.status()) {
        Ok(response)
    } else {
        Err(status_error(call, response).await)
    }
}

/// The error for an answer whose status the call does not accept.
pub(super) async fn status_error(call: &Call<'_>, response: Response) -> RegistryError {
    let status = response.status().as_u16();
    RegistryError::Status {
        image: call.image.to_string(),
        what: call.what.clone(),
        status,
        body: error_body(response).await,
    }
}

/// The start of an error answer's body, as text.
pub(super) async fn error_body(mut response: Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    let text = String::from_utf8_lossy(&body).trim().to_owned();
    if text.is_empty() {
        "(empty body)".to_owned()
    } else {
        text
    }
}

/// Reads a whole body, refusing one larger than `cap`.
pub(super) async fn read_capped(
    call: &Call<'_>,
    mut response: Response,
    cap: u64,
) -> Result<Vec<u8>, RegistryError> {
    let too_big = || call.protocol(format!("answer is larger than {cap} bytes"));
    if response.content_length().is_some_and(|n| n > cap) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|source| call.unreachable(1, source))?
    {
        if (body.len() + chunk.len()) as u64 > cap {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A header's value, if present and text.
pub(super) fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}
