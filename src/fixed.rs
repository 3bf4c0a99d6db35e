//! Config arrays of a fixed length (`[detector] thresholds`,
//! `[calibration] class_bias`).
//!
//! In: a TOML array. Out: `[f32; N]`, or an error saying how many values
//! were expected and found (TOML's error adds the key and line). TOML's
//! reader would otherwise fill a fixed array from the first N values and
//! silently drop the rest. A bottom layer: it imports nothing of ours.

use serde::Deserialize;

/// `#[serde(deserialize_with = "crate::fixed::floats")]`.
pub fn floats<'de, D, const N: usize>(d: D) -> Result<[f32; N], D::Error>
where
    D: serde::Deserializer<'de>,
{
    let v = Vec::<f32>::deserialize(d)?;
    <[f32; N]>::try_from(v.as_slice()).map_err(|_| {
        serde::de::Error::custom(format!("needs exactly {N} values, found {}", v.len()))
    })
}
