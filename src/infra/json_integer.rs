//! JSON integers as JSON Schema reads them: `72` and `72.0` are the same
//! integer (JSON has one number type), so a body field the API documents as
//! an `integer` accepts both. A fraction, a negative number or a value out
//! of range is still refused.

use serde::{Deserialize, Deserializer};
use serde_json::Number;

/// The non-negative integer `number` is, if it is one.
pub fn as_u64(number: &Number) -> Option<u64> {
    number.as_u64().or_else(|| {
        let float = number.as_f64()?;
        // 2^64 itself is out of range; every float below it is exact here.
        (float.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&float))
            .then_some(float as u64)
    })
}

fn parse<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    match Option::<Number>::deserialize(deserializer)? {
        None => Ok(None),
        Some(number) => as_u64(&number).map(Some).ok_or_else(|| {
            serde::de::Error::custom(format!("{number} is not a non-negative integer"))
        }),
    }
}

/// `#[serde(deserialize_with = "...::u64")]`
pub fn u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    parse(deserializer)?.ok_or_else(|| serde::de::Error::custom("expected an integer, got null"))
}

/// `#[serde(default, deserialize_with = "...::optional_u64")]`
pub fn optional_u64<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    parse(deserializer)
}

/// `#[serde(default, deserialize_with = "...::optional_usize")]`
pub fn optional_usize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<usize>, D::Error> {
    parse(deserializer)?
        .map(|n| usize::try_from(n).map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Body {
        #[serde(deserialize_with = "u64")]
        id: u64,
        #[serde(default, deserialize_with = "optional_u64")]
        timeout: Option<u64>,
    }

    fn body(json: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn an_integral_float_is_the_integer() {
        let b = body(r#"{"id": 72.0, "timeout": 159.0}"#).unwrap();
        assert_eq!((b.id, b.timeout), (72, Some(159)));
        let b = body(r#"{"id": 18446744073709551615}"#).unwrap();
        assert_eq!((b.id, b.timeout), (u64::MAX, None));
        assert_eq!(body(r#"{"id": 1, "timeout": null}"#).unwrap().timeout, None);
    }

    #[test]
    fn fractions_negatives_and_out_of_range_are_refused() {
        for bad in [
            r#"{"id": 72.5}"#,
            r#"{"id": -1}"#,
            r#"{"id": -1.0}"#,
            r#"{"id": 1.8446744073709552e19}"#,
            r#"{"id": 1e300}"#,
            r#"{"id": "72"}"#,
            r#"{"id": null}"#,
            r#"{"id": 1, "timeout": 0.5}"#,
        ] {
            assert!(body(bad).is_err(), "{bad}");
        }
    }
}
