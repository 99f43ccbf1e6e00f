//! Extractors that answer the spec's error JSON: validated JSON and query
//! bodies, the `{id}` path parameter, nullable fields.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::validate::fe;
use crate::http::error::ApiError;

/// JSON body whose rejections become the spec's error JSON.
pub struct ValidJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ValidJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

fn json_rejection(e: JsonRejection) -> ApiError {
    match e {
        JsonRejection::JsonDataError(d) => {
            let text = d.body_text();
            // "Failed to deserialize the JSON body into the target type: field: message"
            let detail = text
                .split_once("target type: ")
                .map_or(text.as_str(), |x| x.1);
            let (field, msg) = match detail.split_once(": ") {
                Some((f, m)) if !f.contains(' ') => (f.to_owned(), m.to_owned()),
                _ => ("body".to_owned(), detail.to_owned()),
            };
            let field = if field == "." { "body".into() } else { field };
            ApiError::Validation(vec![fe(&field, without_position(&msg))])
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::Validation(vec![fe("body", "send Content-Type: application/json")])
        }
        other => ApiError::Validation(vec![fe("body", other.body_text())]),
    }
}

/// serde_json's message without its " at line 1 column 40": the field is
/// named already, and a form's user has no lines or columns.
fn without_position(msg: &str) -> &str {
    match msg.rsplit_once(" at line ") {
        Some((m, pos))
            if pos
                .split_once(" column ")
                .is_some_and(|(l, c)| is_number(l) && is_number(c)) =>
        {
            m
        }
        _ => msg,
    }
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Query string whose rejections become the spec's error JSON.
pub struct ValidQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ValidQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(e) => Err(query_rejection(e)),
        }
    }
}

fn query_rejection(e: QueryRejection) -> ApiError {
    let text = e.body_text();
    let detail = text
        .split_once("query string: ")
        .map_or(text.as_str(), |x| x.1);
    ApiError::Validation(vec![fe("query", detail)])
}

/// A row id that can come from the `{id}` path parameter: plain `i64` for
/// rows without an id type, or one of proto's newtypes.
pub trait RowId: Sized {
    fn from_row_id(n: i64) -> Self;
}

impl RowId for i64 {
    fn from_row_id(n: i64) -> Self {
        n
    }
}

macro_rules! row_id {
    ($($t:ty),*) => {$(
        impl RowId for $t {
            fn from_row_id(n: i64) -> Self {
                Self(n)
            }
        }
    )*};
}

row_id!(
    proto::types::UserId,
    proto::types::DeviceId,
    proto::types::DidId,
    proto::types::CdrId,
    proto::types::RouteId
);

/// The `{id}` path parameter; anything but a positive integer is a 404.
/// `Id<DeviceId>` and the like for rows with an id type, `Id` (`i64`) for
/// the rest.
pub struct Id<T = i64>(pub T);

impl<S: Send + Sync, T: RowId> FromRequestParts<S> for Id<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(v) =
            axum::extract::Path::<std::collections::HashMap<String, String>>::from_request_parts(
                parts, state,
            )
            .await
            .map_err(|_| ApiError::NotFound)?;
        v.get("id")
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|n| *n > 0)
            .map(|n| Id(T::from_row_id(n)))
            .ok_or(ApiError::NotFound)
    }
}

/// For `Option<Option<T>>` fields with `#[serde(default)]`: an absent field
/// stays `None` (keep), an explicit `null` becomes `Some(None)` (clear), as
/// in JSON Merge Patch (RFC 7396).
pub fn nullable<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_positions_are_left_out_of_field_messages() {
        assert_eq!(
            without_position(
                "unknown variant `x`, expected one of `udp`, `tcp` at line 1 column 40"
            ),
            "unknown variant `x`, expected one of `udp`, `tcp`"
        );
        assert_eq!(without_position("no line here"), "no line here");
        assert_eq!(
            without_position("said at line two column three"),
            "said at line two column three"
        );
    }
}
