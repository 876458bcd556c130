//! Keyset paging shared by the listings: the `limit` rule and the cut of an over-fetched page.

use crate::error::ApiError;

/// `limit`: 1–200, default 50.
pub fn limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(50);
    if (1..=200).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::InvalidParameter {
            field: "limit".into(),
            message: "must be from 1 to 200".into(),
        })
    }
}

/// Listings fetch `limit + 1` rows: when the extra row came back there is a next page. Cuts
/// `rows` to `limit` and returns the cursor of its last row, made by `cursor`.
pub fn cut<T>(rows: &mut Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Option<String> {
    if rows.len() as i64 <= limit {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(cursor)
}
