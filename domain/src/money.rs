//! Amounts in integer minor units and ISO-4217 currencies.
//!
//! There are no floats anywhere: an amount is an `i64` count of the currency's minor unit (cents for USD,
//! won for KRW, which has none). The original accepted any 1–3 characters as a currency and had no upper
//! bound on amounts; both are closed here.

use crate::FieldError;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A strictly positive amount in minor units, at most [`Amount::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Amount(i64);

impl Amount {
    /// The largest amount one payment may carry: 99,999,999,999 minor units (about 1 billion USD, or
    /// 100 billion KRW). Large enough for any retail payment, small enough that sums of many never overflow.
    pub const MAX: i64 = 99_999_999_999;

    pub fn parse(field: &'static str, value: i64) -> Result<Self, FieldError> {
        if value <= 0 {
            return Err(FieldError::new(field, "must be greater than 0"));
        }
        if value > Self::MAX {
            return Err(FieldError::new(
                field,
                format!("must be at most {}", Self::MAX),
            ));
        }
        Ok(Self(value))
    }

    pub fn minor_units(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An active ISO-4217 currency code, upper-case, with the number of digits of its minor unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: &'static str,
    minor_digits: u8,
}

/// Active ISO-4217 codes and their minor-unit digits (funds codes, precious metals and test codes left out).
#[rustfmt::skip]
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2), ("AFN", 2), ("ALL", 2), ("AMD", 2), ("ANG", 2), ("AOA", 2), ("ARS", 2), ("AUD", 2),
    ("AWG", 2), ("AZN", 2), ("BAM", 2), ("BBD", 2), ("BDT", 2), ("BGN", 2), ("BHD", 3), ("BIF", 0),
    ("BMD", 2), ("BND", 2), ("BOB", 2), ("BRL", 2), ("BSD", 2), ("BTN", 2), ("BWP", 2), ("BYN", 2),
    ("BZD", 2), ("CAD", 2), ("CDF", 2), ("CHF", 2), ("CLP", 0), ("CNY", 2), ("COP", 2), ("CRC", 2),
    ("CUP", 2), ("CVE", 2), ("CZK", 2), ("DJF", 0), ("DKK", 2), ("DOP", 2), ("DZD", 2), ("EGP", 2),
    ("ERN", 2), ("ETB", 2), ("EUR", 2), ("FJD", 2), ("FKP", 2), ("GBP", 2), ("GEL", 2), ("GHS", 2),
    ("GIP", 2), ("GMD", 2), ("GNF", 0), ("GTQ", 2), ("GYD", 2), ("HKD", 2), ("HNL", 2), ("HTG", 2),
    ("HUF", 2), ("IDR", 2), ("ILS", 2), ("INR", 2), ("IQD", 3), ("IRR", 2), ("ISK", 0), ("JMD", 2),
    ("JOD", 3), ("JPY", 0), ("KES", 2), ("KGS", 2), ("KHR", 2), ("KMF", 0), ("KPW", 2), ("KRW", 0),
    ("KWD", 3), ("KYD", 2), ("KZT", 2), ("LAK", 2), ("LBP", 2), ("LKR", 2), ("LRD", 2), ("LSL", 2),
    ("LYD", 3), ("MAD", 2), ("MDL", 2), ("MGA", 2), ("MKD", 2), ("MMK", 2), ("MNT", 2), ("MOP", 2),
    ("MRU", 2), ("MUR", 2), ("MVR", 2), ("MWK", 2), ("MXN", 2), ("MYR", 2), ("MZN", 2), ("NAD", 2),
    ("NGN", 2), ("NIO", 2), ("NOK", 2), ("NPR", 2), ("NZD", 2), ("OMR", 3), ("PAB", 2), ("PEN", 2),
    ("PGK", 2), ("PHP", 2), ("PKR", 2), ("PLN", 2), ("PYG", 0), ("QAR", 2), ("RON", 2), ("RSD", 2),
    ("RUB", 2), ("RWF", 0), ("SAR", 2), ("SBD", 2), ("SCR", 2), ("SDG", 2), ("SEK", 2), ("SGD", 2),
    ("SHP", 2), ("SLE", 2), ("SOS", 2), ("SRD", 2), ("SSP", 2), ("STN", 2), ("SVC", 2), ("SYP", 2),
    ("SZL", 2), ("THB", 2), ("TJS", 2), ("TMT", 2), ("TND", 3), ("TOP", 2), ("TRY", 2), ("TTD", 2),
    ("TWD", 2), ("TZS", 2), ("UAH", 2), ("UGX", 0), ("USD", 2), ("UYU", 2), ("UZS", 2), ("VES", 2),
    ("VND", 0), ("VUV", 0), ("WST", 2), ("XAF", 0), ("XCD", 2), ("XOF", 0), ("XPF", 0), ("YER", 2),
    ("ZAR", 2), ("ZMW", 2), ("ZWG", 2),
];

impl Currency {
    /// Parses an upper-case ISO-4217 code. Lower case is refused rather than fixed up: a client that sends
    /// `krw` has a bug worth hearing about.
    pub fn parse(field: &'static str, code: &str) -> Result<Self, FieldError> {
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == code)
            .map(|&(code, minor_digits)| Self { code, minor_digits })
            .ok_or_else(|| {
                FieldError::new(
                    field,
                    format!(
                        "'{code}' is not an ISO-4217 currency code (upper case, e.g. KRW, USD)"
                    ),
                )
            })
    }

    pub fn code(self) -> &'static str {
        self.code
    }

    pub fn minor_digits(self) -> u8 {
        self.minor_digits
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl Serialize for Currency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::parse("currency", &s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amount_rejects_zero_negative_and_too_large() {
        for bad in [0, -1, i64::MIN, Amount::MAX + 1, i64::MAX] {
            assert!(
                Amount::parse("amount", bad).is_err(),
                "{bad} must be rejected"
            );
        }
        for good in [1, 1000, Amount::MAX] {
            assert_eq!(Amount::parse("amount", good).unwrap().minor_units(), good);
        }
    }

    #[test]
    fn currency_accepts_iso_codes_only() {
        assert_eq!(
            Currency::parse("currency", "KRW").unwrap().minor_digits(),
            0
        );
        assert_eq!(
            Currency::parse("currency", "USD").unwrap().minor_digits(),
            2
        );
        assert_eq!(
            Currency::parse("currency", "KWD").unwrap().minor_digits(),
            3
        );
        for bad in ["", "a", "xx", "krw", "KRWW", "XXX", "ABC"] {
            assert!(
                Currency::parse("currency", bad).is_err(),
                "{bad:?} must be rejected"
            );
        }
    }

    #[test]
    fn currency_table_has_no_duplicates_and_is_upper_case() {
        let mut seen = std::collections::HashSet::new();
        for (code, _) in CURRENCIES {
            assert!(seen.insert(code), "{code} listed twice");
            assert!(code.len() == 3 && code.chars().all(|c| c.is_ascii_uppercase()));
        }
    }
}
