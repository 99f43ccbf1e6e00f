//! The outbound number plan: which dialled strings are emergency calls,
//! which E.164 numbers are international from the system's country and which
//! are premium-rate or high-cost. Pure tables and functions; the B2BUA asks
//! them before a call goes to the trunk. Nothing here knows about SIP.
//!
//! The tables are data on purpose: when a regulator opens a new premium range
//! it is one line here, with the plan it came from named beside it.

/// What an outbound dialled string is, for the policy that follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// An emergency number: dialled as-is, never refused.
    Emergency(String),
    /// An E.164 number inside the system's country.
    Domestic(String),
    /// An E.164 number outside it (NANP members outside the US count here).
    International(String),
    /// Not a number we can dial.
    Invalid,
}

/// Classifies `dialed` (what the phone put in the Request-URI user part)
/// for a system in `country` (calling code digits, e.g. "1", "44").
pub fn classify(dialed: &str, country: &str) -> Class {
    if let Some(n) = emergency(dialed, country) {
        return Class::Emergency(n);
    }
    match proto::types::E164::normalize(dialed, country) {
        Ok(n) if is_international(n.as_str(), country) => Class::International(n.as_str().into()),
        Ok(n) => Class::Domestic(n.as_str().into()),
        Err(_) => Class::Invalid,
    }
}

/// The emergency number `dialed` names, digits only, when it is one in
/// `country` or one of [`EVERYWHERE`] (a visitor dials what they know;
/// ITU-T E.161.1 recommends 112 and 911 as the global alternatives).
pub fn emergency(dialed: &str, country: &str) -> Option<String> {
    let digits: String = dialed
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\t'))
        .collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let national = EMERGENCY
        .iter()
        .filter(|(cc, _)| *cc == country)
        .flat_map(|(_, list)| list.iter());
    EVERYWHERE
        .iter()
        .chain(national)
        .any(|n| *n == digits)
        .then_some(digits)
}

/// True when the E.164 number `n` is outside `country`. For the NANP
/// (country 1) only the US, its territories and Canada are domestic: the
/// other member countries share +1 but bill as international calls, and are
/// the classic target of toll fraud ("one-ring" and call-back scams).
pub fn is_international(n: &str, country: &str) -> bool {
    let Some(digits) = n.strip_prefix('+') else {
        return true;
    };
    // Country calling codes are a prefix code (ITU-T E.164), so a prefix
    // match names the country.
    let Some(national) = digits.strip_prefix(country).filter(|_| !country.is_empty()) else {
        return true;
    };
    country == "1" && NANP_ABROAD.iter().any(|a| national.starts_with(a))
}

/// True when `n` (E.164) is premium-rate or otherwise high-cost: a range of
/// [`PREMIUM`] in its country, or a global service code of [`PREMIUM_GLOBAL`].
pub fn is_premium(n: &str) -> bool {
    let Some(digits) = n.strip_prefix('+') else {
        return false;
    };
    if PREMIUM_GLOBAL.iter().any(|p| digits.starts_with(p)) {
        return true;
    }
    // NANP pay-per-call lives in an exchange of every area: NPA-976-XXXX.
    if let Some(national) = digits.strip_prefix('1')
        && national.len() == 10
        && NANP_PREMIUM_EXCHANGES.contains(&&national[3..6])
    {
        return true;
    }
    PREMIUM.iter().any(|(cc, ranges)| {
        digits
            .strip_prefix(cc)
            .is_some_and(|national| ranges.iter().any(|r| national.starts_with(r)))
    })
}

/// Reached from every country: the GSM standard's 112 (3GPP TS 22.101
/// section 10) and North America's 911, which most GSM handsets also map.
pub const EVERYWHERE: &[&str] = &["112", "911"];

/// National emergency numbers by country calling code, as each country
/// publishes them (the ITU's "Emergency numbers" list, Operational Bulletin
/// annex, and the EU's 112 directive for the member states).
pub const EMERGENCY: &[(&str, &[&str])] = &[
    ("1", &["911"]),                                     // US, Canada, NANP
    ("7", &["101", "102", "103", "104"]),                // Russia, Kazakhstan
    ("27", &["10111", "10177"]),                         // South Africa
    ("31", &[]),                                         // Netherlands: 112 only
    ("32", &["100", "101"]),                             // Belgium
    ("33", &["15", "17", "18"]),                         // France
    ("34", &["061", "062", "080", "085", "091", "092"]), // Spain
    ("39", &["113", "115", "118"]),                      // Italy
    ("41", &["117", "118", "144"]),                      // Switzerland
    ("43", &["122", "133", "144"]),                      // Austria
    ("44", &["999"]),                                    // United Kingdom
    ("45", &[]),                                         // Denmark: 112 only
    ("46", &[]),                                         // Sweden: 112 only
    ("47", &["110", "113"]),                             // Norway
    ("48", &["997", "998", "999"]),                      // Poland
    ("49", &["110"]),                                    // Germany
    ("52", &["911"]),                                    // Mexico
    ("55", &["190", "192", "193"]),                      // Brazil
    ("61", &["000", "106"]),                             // Australia
    ("63", &["911"]),                                    // Philippines
    ("64", &["111"]),                                    // New Zealand
    ("65", &["995", "999"]),                             // Singapore
    ("81", &["110", "118", "119"]),                      // Japan
    ("86", &["110", "119", "120", "122"]),               // China
    ("91", &["100", "101", "102", "108"]),               // India
    ("351", &[]),                                        // Portugal: 112 only
    ("353", &["999"]),                                   // Ireland
    ("358", &[]),                                        // Finland: 112 only
    ("852", &["999"]),                                   // Hong Kong
    ("972", &["100", "101", "102"]),                     // Israel
];

/// NANP area codes of member countries other than the US and Canada, from
/// NANPA's list of NANP countries and their area codes. The US territories
/// (340 USVI, 670 CNMI, 671 Guam, 684 American Samoa, 787/939 Puerto Rico)
/// are left out: they are the US, dialled and billed as domestic calls.
pub const NANP_ABROAD: &[&str] = &[
    "242", // Bahamas
    "246", // Barbados
    "264", // Anguilla
    "268", // Antigua and Barbuda
    "284", // British Virgin Islands
    "345", // Cayman Islands
    "441", // Bermuda
    "473", // Grenada
    "649", // Turks and Caicos
    "658", // Jamaica
    "664", // Montserrat
    "721", // Sint Maarten
    "758", // Saint Lucia
    "767", // Dominica
    "784", // Saint Vincent and the Grenadines
    "809", // Dominican Republic
    "829", // Dominican Republic
    "849", // Dominican Republic
    "868", // Trinidad and Tobago
    "869", // Saint Kitts and Nevis
    "876", // Jamaica
];

/// Premium-rate and high-cost ranges by country calling code, as national
/// prefixes after the code (trunk 0 dropped), from each national numbering
/// plan: NANPA (NANP), Ofcom's National Telephone Numbering Plan (GB),
/// Bundesnetzagentur (DE), ARCEP (FR), AGCOM (IT), CNMC (ES), ACM (NL),
/// BIPT (BE), RTR (AT), BAKOM (CH), PTS (SE), ACMA (AU) and
/// the NZ Numbering Plan.
pub const PREMIUM: &[(&str, &[&str])] = &[
    // NANP: premium (area 900); pay-per-call exchanges are in
    // NANP_PREMIUM_EXCHANGES.
    ("1", &["900"]),
    // GB: premium (09), higher-cost service (087), personal numbers (070)
    // that fraud resells as mobiles. Directory enquiries (118xxx) is a short
    // code: +44 118 is Reading.
    ("44", &["9", "87", "70"]),
    // DE: premium (0900), televoting (0137), directory enquiries (118).
    ("49", &["900", "137", "118"]),
    // FR: premium (08 9x and 08 2x).
    ("33", &["89", "82"]),
    // IT: premium (89x), adult and chat lines (144, 166).
    ("39", &["89", "144", "166"]),
    // ES: premium (803, 806, 807, 905), directory enquiries (118).
    ("34", &["803", "806", "807", "905", "118"]),
    // NL: premium (0900, 0906, 0909).
    ("31", &["900", "906", "909"]),
    // BE: premium (090x).
    ("32", &["90"]),
    // AT: premium (0900, 0930, 0939).
    ("43", &["900", "930", "939"]),
    // CH: premium (0900, 0901, 0906).
    ("41", &["900", "901", "906"]),
    // SE: premium (0900, 0939, 0944).
    ("46", &["900", "939", "944"]),
    // AU: premium (190x).
    ("61", &["19"]),
    // NZ: premium (0900).
    ("64", &["900"]),
];

/// NANP central office codes of pay-per-call services, in any area code.
pub const NANP_PREMIUM_EXCHANGES: &[&str] = &["976"];

/// Global service codes billed far above any call (ITU-T E.164 assignments):
/// Inmarsat (870), global mobile satellite systems (881), international
/// networks (882, 883) and international premium rate (979). International
/// revenue share fraud terminates on these.
pub const PREMIUM_GLOBAL: &[&str] = &["870", "881", "882", "883", "979"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nine_one_one_and_one_one_two_are_emergency_calls_in_every_country() {
        for country in ["1", "44", "49", "61", "998"] {
            assert_eq!(emergency("911", country).as_deref(), Some("911"));
            assert_eq!(emergency("112", country).as_deref(), Some("112"));
        }
    }

    #[test]
    fn national_emergency_numbers_count_only_in_their_country() {
        assert_eq!(emergency("999", "44").as_deref(), Some("999"));
        assert_eq!(emergency("000", "61").as_deref(), Some("000"));
        assert_eq!(emergency("111", "64").as_deref(), Some("111"));
        assert_eq!(emergency("999", "1"), None);
        assert_eq!(emergency("000", "1"), None);
        assert_eq!(emergency("111", "44"), None);
    }

    #[test]
    fn longer_numbers_that_start_with_an_emergency_code_are_not_emergency_calls() {
        assert_eq!(emergency("9115551234", "1"), None);
        assert_eq!(emergency("+1911", "1"), None);
        assert_eq!(emergency("91", "1"), None);
        assert_eq!(emergency("", "1"), None);
        assert_eq!(emergency("9 1 1", "1").as_deref(), Some("911"));
    }

    #[test]
    fn every_country_in_the_tables_is_listed_once() {
        for table in [EMERGENCY, PREMIUM] {
            let mut seen: Vec<&str> = table.iter().map(|(cc, _)| *cc).collect();
            let n = seen.len();
            seen.sort_unstable();
            seen.dedup();
            assert_eq!(seen.len(), n);
        }
    }

    #[test]
    fn caribbean_nanp_area_codes_are_international_from_the_us() {
        for n in [
            "+18765551234",
            "+18095551234",
            "+12845551234",
            "+12425551234",
            "+14415551234",
            "+16585551234",
        ] {
            assert!(is_international(n, "1"), "{n}");
            assert_eq!(
                classify(&n[2..], "1"),
                Class::International(n.into()),
                "{n} dialled as 10 digits"
            );
        }
    }

    #[test]
    fn the_us_its_territories_and_canada_are_domestic_with_country_one() {
        for n in [
            "+12125551234", // New York
            "+14165551234", // Toronto
            "+17875551234", // Puerto Rico
            "+13405551234", // US Virgin Islands
            "+16715551234", // Guam
            "+18005551234", // toll-free
        ] {
            assert!(!is_international(n, "1"), "{n}");
        }
    }

    #[test]
    fn other_countries_are_international_and_the_home_country_is_not() {
        assert!(is_international("+442071234567", "1"));
        assert!(!is_international("+442071234567", "44"));
        assert!(is_international("+12125551234", "44"));
        // The NANP exception is for country 1 only.
        assert!(!is_international("+4487612345678", "44"));
        assert!(is_international("+12125551234", ""));
    }

    #[test]
    fn premium_and_high_cost_ranges_are_found_per_country() {
        for n in [
            "+19005551234",
            "+12129761234",
            "+449098765432",
            "+448712345678",
            "+447012345678",
            "+4990012345678",
            "+33899123456",
            "+39899123456",
            "+61190012345",
            "+8816123456789",
            "+979123456789",
        ] {
            assert!(is_premium(n), "{n}");
        }
        for n in [
            "+12125551234",
            "+18005551234",
            "+442071234567",
            "+447712345678", // UK mobile, not 070
            "+441189876543", // Reading, not directory enquiries
            "+19765551234",  // 976 is an exchange, not an area
            "+4930123456",
            "+33123456789",
            "+61212345678",
        ] {
            assert!(!is_premium(n), "{n}");
        }
    }

    #[test]
    fn classify_puts_emergency_before_everything_else() {
        assert_eq!(classify("911", "1"), Class::Emergency("911".into()));
        assert_eq!(classify("999", "44"), Class::Emergency("999".into()));
        assert_eq!(
            classify("(212) 555-1234", "1"),
            Class::Domestic("+12125551234".into())
        );
        assert_eq!(classify("555", "1"), Class::Invalid);
    }
}
