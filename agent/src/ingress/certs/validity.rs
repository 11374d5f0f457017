//! Reading a certificate's validity period (notBefore, notAfter) from its
//! DER, which is all the renewal schedule needs to know about it. A full X.509
//! parser would cost the static agent binary size for two timestamps; the walk
//! here follows RFC 5280's fixed field order up to `validity` and refuses
//! anything it does not recognise.

use std::time::{Duration, SystemTime};

/// `(notBefore, notAfter)` of a DER certificate, or why it cannot be read.
pub fn validity(der: &[u8]) -> Result<(SystemTime, SystemTime), String> {
    let (certificate, _) = element(der, 0x30).map_err(|e| format!("certificate: {e}"))?;
    let (tbs, _) = element(certificate, 0x30).map_err(|e| format!("tbsCertificate: {e}"))?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = element(rest, 0xa0)?.1; // version
    }
    rest = element(rest, 0x02)?.1; // serialNumber
    rest = element(rest, 0x30)?.1; // signature algorithm
    rest = element(rest, 0x30)?.1; // issuer
    let (validity, _) = element(rest, 0x30).map_err(|e| format!("validity: {e}"))?;
    let (not_before, rest) = time(validity)?;
    let (not_after, _) = time(rest)?;
    Ok((not_before, not_after))
}

/// The content of the element at the start of `input` with tag `tag`, and
/// what follows it.
fn element(input: &[u8], tag: u8) -> Result<(&[u8], &[u8]), String> {
    let (&found, rest) = input.split_first().ok_or("truncated")?;
    if found != tag {
        return Err(format!("expected tag {tag:#04x}, found {found:#04x}"));
    }
    let (&first, mut rest) = rest.split_first().ok_or("truncated length")?;
    let length = match first {
        0..=0x7f => usize::from(first),
        0x81..=0x84 => {
            let octets = usize::from(first & 0x7f);
            if rest.len() < octets {
                return Err("truncated length".into());
            }
            let (bytes, after) = rest.split_at(octets);
            rest = after;
            bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
        }
        _ => return Err(format!("unsupported length octet {first:#04x}")),
    };
    if rest.len() < length {
        return Err("element longer than its input".into());
    }
    Ok(rest.split_at(length))
}

/// A UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(input: &[u8]) -> Result<(SystemTime, &[u8]), String> {
    let (text, year) = match input.first() {
        Some(0x17) => {
            let (text, rest) = element(input, 0x17)?;
            let yy = digits(text, 0, 2)?;
            (
                (&text[2..], rest),
                if yy >= 50 { 1900 + yy } else { 2000 + yy },
            )
        }
        Some(0x18) => {
            let (text, rest) = element(input, 0x18)?;
            let year = digits(text, 0, 4)?;
            ((&text[4..], rest), year)
        }
        _ => return Err("validity holds no UTCTime or GeneralizedTime".into()),
    };
    let (fields, rest) = text;
    if fields.len() != 11 || fields[10] != b'Z' {
        return Err("a validity time is not of the form …MMDDHHMMSSZ".into());
    }
    let month = digits(fields, 0, 2)?;
    let day = digits(fields, 2, 2)?;
    let (hour, minute, second) = (
        digits(fields, 4, 2)?,
        digits(fields, 6, 2)?,
        digits(fields, 8, 2)?,
    );
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err("a validity time is out of range".into());
    }
    let days = days_since_epoch(year, month, day);
    let seconds = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
    let time = match u64::try_from(seconds) {
        Ok(after) => SystemTime::UNIX_EPOCH + Duration::from_secs(after),
        Err(_) => SystemTime::UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs()),
    };
    Ok((time, rest))
}

fn digits(text: &[u8], at: usize, count: usize) -> Result<u32, String> {
    let slice = text
        .get(at..at + count)
        .ok_or("a validity time is too short")?;
    slice.iter().try_fold(0u32, |n, &b| {
        if b.is_ascii_digit() {
            Ok(n * 10 + u32::from(b - b'0'))
        } else {
            Err("a validity time holds a non-digit".to_owned())
        }
    })
}

/// Days from 1970-01-01 to the given proleptic Gregorian date.
fn days_since_epoch(year: u32, month: u32, day: u32) -> i64 {
    // Count years from March, so the leap day is the last day of a "year".
    let (year, month) = (i64::from(year), i64::from(month));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_count_days_like_the_calendar() {
        assert_eq!(days_since_epoch(1970, 1, 1), 0);
        assert_eq!(days_since_epoch(2000, 3, 1), 11_017);
        assert_eq!(days_since_epoch(2024, 2, 29), 19_782);
        assert_eq!(days_since_epoch(1969, 12, 31), -1);
    }

    #[test]
    fn the_validity_of_a_generated_certificate_is_read_back() {
        // UTCTime both sides; then a notAfter from 2050 on, a GeneralizedTime.
        for (not_before, not_after) in [
            ((2026, 12, 1), (2027, 3, 1)),
            ((2025, 1, 31), (2051, 6, 15)),
        ] {
            let mut params = rcgen::CertificateParams::new(vec!["hello.test".into()]).unwrap();
            params.not_before = rcgen::date_time_ymd(not_before.0, not_before.1, not_before.2);
            params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            let (before, after) = validity(cert.der()).unwrap();
            let day = |(y, m, d): (i32, u8, u8)| {
                let days = days_since_epoch(y as u32, u32::from(m), u32::from(d));
                SystemTime::UNIX_EPOCH + Duration::from_secs(days as u64 * 86_400)
            };
            assert_eq!(before, day(not_before));
            assert_eq!(after, day(not_after));
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(validity(b"").is_err());
        assert!(validity(&[0x30, 0x82, 0xff]).is_err());
        assert!(validity(&[0x30, 0x03, 0x30, 0x01, 0x00]).is_err());
    }
}
