//! The principal of a TLS client certificate (mTLS), as Kafka's default
//! SSL principal builder names it: `User:` and the subject's distinguished
//! name in RFC 2253 form (`CN=alice,OU=eng,O=Acme`), what Java's
//! `X500Principal.getName()` prints, so ACLs written for Kafka match.
//!
//! Owns: a small DER reader for the certificate's subject (the rest of the
//! certificate was verified by rustls's WebPKI before this runs) and RFC
//! 2253's formatting (the RDNs last to first, known attribute keywords,
//! `#hex` for others, escaping).
//!
//! Must never: panic or read past the bytes on any input (the certificate
//! comes off the network); an unreadable subject names no principal.

/// One DER element: (tag, content, what follows).
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // multi-byte tags: none in a Name
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &d| (a << 8) | d as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Every element of a constructed value's content.
fn elements(mut b: &[u8]) -> Option<Vec<(u8, &[u8])>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let (t, c, rest) = tlv(b)?;
        out.push((t, c));
        b = rest;
    }
    Some(out)
}

/// The subject Name's content (a SEQUENCE OF RDN) of a DER certificate.
fn subject(cert: &[u8]) -> Option<&[u8]> {
    let (0x30, body, _) = tlv(cert)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(body)? else {
        return None;
    };
    let mut fields = elements(tbs)?.into_iter();
    let mut f = fields.next()?;
    if f.0 == 0xa0 {
        f = fields.next()?; // the explicit version
    }
    // serial (f), signature algorithm, issuer, validity, then the subject.
    let (tag, name) = fields.nth(3)?;
    (f.0 == 0x02 && tag == 0x30).then_some(name)
}

/// RFC 2253's keyword for an attribute type, by its OID's DER content.
fn keyword(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x09] => "STREET",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

/// An OID's dotted form (for attribute types without a keyword).
fn dotted(oid: &[u8]) -> Option<String> {
    let (&first, rest) = oid.split_first()?;
    let mut parts = vec![
        (first / 40).min(2) as u64,
        first as u64 - 40 * (first / 40).min(2) as u64,
    ];
    let mut v: u64 = 0;
    for &b in rest {
        if v > (u64::MAX >> 7) {
            return None;
        }
        v = (v << 7) | (b & 0x7f) as u64;
        if b & 0x80 == 0 {
            parts.push(v);
            v = 0;
        }
    }
    Some(
        parts
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// A string value, RFC 2253-escaped; None for a type that is not a string
/// (it is then written as `#` and its DER in hex).
fn string(tag: u8, content: &[u8]) -> Option<String> {
    let s = match tag {
        // UTF8String, PrintableString, IA5String, TeletexString.
        0x0c | 0x13 | 0x16 | 0x14 => String::from_utf8(content.to_vec()).ok()?,
        // BMPString: UTF-16BE.
        0x1e => {
            if !content.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()?
        }
        _ => return None,
    };
    let n = s.chars().count();
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        let edge = (i == 0 && (c == ' ' || c == '#')) || (i + 1 == n && c == ' ');
        if edge || matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') {
            out.push('\\');
        }
        out.push(c);
    }
    Some(out)
}

/// `User:` and the certificate subject's RFC 2253 name, or None when the
/// subject cannot be read (or is empty).
pub fn of_certificate(cert_der: &[u8]) -> Option<String> {
    let name = subject(cert_der)?;
    let mut rdns = Vec::new();
    for (tag, set) in elements(name)? {
        if tag != 0x31 {
            return None;
        }
        let mut avas = Vec::new();
        for (t, ava) in elements(set)? {
            if t != 0x30 {
                return None;
            }
            let (0x06, oid, rest) = tlv(ava)? else {
                return None;
            };
            let (vtag, value, _) = tlv(rest)?;
            let key = match keyword(oid) {
                Some(k) => k.to_owned(),
                None => dotted(oid)?,
            };
            let value = match keyword(oid).and_then(|_| string(vtag, value)) {
                Some(v) => v,
                None => {
                    // The value's whole DER, hex.
                    let der = &rest[..rest.len() - tlv(rest)?.2.len()];
                    let hex: String = der.iter().map(|b| format!("{b:02x}")).collect();
                    format!("#{hex}")
                }
            };
            avas.push(format!("{key}={value}"));
        }
        rdns.push(avas.join("+"));
    }
    if rdns.is_empty() {
        return None;
    }
    rdns.reverse();
    Some(format!("User:{}", rdns.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_rfc_2253_name_from_a_real_certificate() {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["client".to_owned()]).unwrap();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CountryName, "US");
        p.distinguished_name
            .push(DnType::OrganizationName, "Acme, Inc.");
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "eng");
        p.distinguished_name.push(DnType::CommonName, "alice");
        let cert = p.self_signed(&key).unwrap();
        assert_eq!(
            of_certificate(cert.der()).as_deref(),
            Some(r"User:CN=alice,OU=eng,O=Acme\, Inc.,C=US")
        );
    }

    #[test]
    fn oids_without_a_keyword_are_dotted_with_hex_values() {
        // emailAddress (1.2.840.113549.1.9.1), IA5String "a@b".
        let oid = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01];
        assert_eq!(dotted(&oid).unwrap(), "1.2.840.113549.1.9.1");
        assert_eq!(string(0x0c, b" #x,y ").unwrap(), r"\ #x\,y\ ");
        assert_eq!(string(0x13, b"#a+b").unwrap(), r"\#a\+b");
        assert!(string(0x04, b"raw").is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn fuzz_certificate_subjects_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = of_certificate(&bytes);
        }

        #[test]
        fn fuzz_mutated_certificates_never_panic(pos in 0usize..600, val in any::<u8>()) {
            use rcgen::{CertificateParams, KeyPair};
            let key = KeyPair::generate().unwrap();
            let cert = CertificateParams::new(vec!["x".to_owned()]).unwrap().self_signed(&key).unwrap();
            let mut der = cert.der().to_vec();
            let n = der.len();
            der[pos % n] = val;
            let _ = of_certificate(&der);
        }
    }
}
