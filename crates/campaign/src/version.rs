//! Build versions of an instance and what each allows (the vendor's compatibility list; the
//! tests hold one row per line of it). Every decision about bearer tokens, restrictions and
//! native sign-in is taken here, from the build alone.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A build such as `7.3.2.IMS`, `7.4.1` or `8.6.0`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Build {
    pub major: u16,
    pub minor: u16,
    pub patch: u16,
    /// The `.IMS` variants of 7.3.2 and 7.3.3 carry IMS bearer support ahead of their line.
    pub ims: bool,
}

impl Build {
    pub const fn new(major: u16, minor: u16, patch: u16) -> Self {
        Build {
            major,
            minor,
            patch,
            ims: false,
        }
    }

    const fn ims_variant(major: u16, minor: u16, patch: u16) -> Self {
        Build {
            major,
            minor,
            patch,
            ims: true,
        }
    }

    fn triple(&self) -> (u16, u16, u16) {
        (self.major, self.minor, self.patch)
    }

    /// Technical accounts may call with IMS access tokens.
    pub fn accepts_bearer_tokens(&self) -> bool {
        let v = self.triple();
        match self.major {
            7 => (self.ims && ((7, 3, 2)..=(7, 3, 3)).contains(&v)) || ((7, 3, 5) <= v && v != (7, 4, 0)),
            8 => v >= (8, 5, 0),
            m => m > 8,
        }
    }

    /// The end-user phase is supported: people's operators may be moved to sign-in through the
    /// IMS (the vendor's end-user migration: 7.4.1 and later 7.x, 8.5.2 and later). Earlier
    /// builds carry technical accounts at most.
    pub fn accepts_ims_signin(&self) -> bool {
        let v = self.triple();
        match self.major {
            7 => v >= (7, 4, 1),
            8 => v >= (8, 5, 2),
            m => m > 8,
        }
    }

    /// The `imsConfig` restriction switches exist (7.4.1 and later 7.x, 8.5 and later).
    pub fn supports_restrictions(&self) -> bool {
        let v = self.triple();
        match self.major {
            7 => v >= (7, 4, 1),
            8 => v >= (8, 5, 0),
            m => m > 8,
        }
    }

    /// Native sign-in: allowed, or refused for everyone but the allow-list (8.6 and later).
    pub fn native_auth(&self) -> NativeAuth {
        if self.triple() >= (8, 6, 0) {
            NativeAuth::AllowListOnly
        } else {
            NativeAuth::Allowed
        }
    }

    /// What moving from `self` to `to` changes, in words an administrator reads; an error when
    /// `to` is not newer (instances never go back).
    pub fn upgrade_changes(&self, to: &Build) -> Result<Vec<String>, String> {
        if to <= self {
            return Err(format!(
                "{to} is not newer than {self}: an instance only moves forward"
            ));
        }
        let mut out = Vec::new();
        if !self.accepts_bearer_tokens() && to.accepts_bearer_tokens() {
            out.push("technical accounts may now call with IMS access tokens".to_owned());
        }
        if self.accepts_bearer_tokens() && !to.accepts_bearer_tokens() {
            out.push(format!(
                "IMS access tokens are no longer accepted (builds that accept them: {})",
                Build::BEARER_BUILDS
            ));
        }
        if !self.supports_restrictions() && to.supports_restrictions() {
            out.push("the imsConfig restriction switches become available".to_owned());
        }
        if self.native_auth() == NativeAuth::Allowed && to.native_auth() == NativeAuth::AllowListOnly {
            out.push("native sign-in is refused for every operator outside the allow-list, and the restrictions are always on".to_owned());
        }
        if out.is_empty() {
            out.push("no change to sign-in".to_owned());
        }
        Ok(out)
    }

    /// Newer than any build: reading a configuration file for it checks the file's form, not
    /// whether some build may carry its switches (that is checked where they are applied).
    pub const NEWEST: Build = Build::new(u16::MAX, 0, 0);

    /// Builds to name when a feature is missing.
    pub const BEARER_BUILDS: &'static str = "7.3.2.IMS, 7.3.3.IMS, 7.3.5, 7.4.1 and later 7.x, 8.5 and later";
    pub const RESTRICTION_BUILDS: &'static str = "7.4.1 and later 7.x, 8.5 and later";
    pub const PEOPLE_BUILDS: &'static str = ims_wire::migration::PEOPLE_BUILDS;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NativeAuth {
    /// Until the restrictions switch it off.
    Allowed,
    /// Only the operators of the allow-list.
    AllowListOnly,
}

impl PartialOrd for Build {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Build {
    /// By number; at equal numbers the `.IMS` variant comes after the plain build.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.triple(), self.ims).cmp(&(other.triple(), other.ims))
    }
}

impl fmt::Display for Build {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if self.ims {
            f.write_str(".IMS")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a build version (expected e.g. 7.4.1, 8.5.2 or 7.3.2.IMS)")]
pub struct BadBuild(pub String);

impl FromStr for Build {
    type Err = BadBuild;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadBuild(s.chars().take(40).collect());
        let (numbers, ims) = match s.trim().strip_suffix(".IMS") {
            Some(n) => (n, true),
            None => (s.trim(), false),
        };
        let parts: Vec<&str> = numbers.split('.').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(bad());
        }
        let num = |p: &str| -> Result<u16, BadBuild> {
            if p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let major = num(parts[0])?;
        let minor = num(parts[1])?;
        let patch = match parts.get(2) {
            Some(p) => num(p)?,
            None => 0,
        };
        if ims && !(major == 7 && minor == 3 && (patch == 2 || patch == 3)) {
            return Err(bad());
        }
        Ok(if ims {
            Build::ims_variant(major, minor, patch)
        } else {
            Build::new(major, minor, patch)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn b(s: &str) -> Build {
        s.parse().unwrap()
    }

    /// One line per row of the matrix, with its edges.
    #[test]
    fn the_compatibility_matrix() {
        // (build, end-user phase, bearer tokens, restrictions switch, native auth)
        let rows = [
            ("7.2.0", false, false, false, NativeAuth::Allowed),
            ("7.3.1", false, false, false, NativeAuth::Allowed),
            ("7.3.2", false, false, false, NativeAuth::Allowed),
            ("7.3.2.IMS", false, true, false, NativeAuth::Allowed),
            ("7.3.3.IMS", false, true, false, NativeAuth::Allowed),
            ("7.3.4", false, false, false, NativeAuth::Allowed),
            ("7.3.5", false, true, false, NativeAuth::Allowed),
            ("7.4.0", false, false, false, NativeAuth::Allowed),
            ("7.4.1", true, true, true, NativeAuth::Allowed),
            ("7.4.2", true, true, true, NativeAuth::Allowed),
            ("8.4.0", false, false, false, NativeAuth::Allowed),
            ("8.5.0", false, true, true, NativeAuth::Allowed),
            ("8.5.1", false, true, true, NativeAuth::Allowed),
            ("8.5.2", true, true, true, NativeAuth::Allowed),
            ("8.6.0", true, true, true, NativeAuth::AllowListOnly),
            ("8.7.1", true, true, true, NativeAuth::AllowListOnly),
            ("9.0", true, true, true, NativeAuth::AllowListOnly),
        ];
        for (s, ims, bearer, restrictions, native) in rows {
            let v = b(s);
            assert_eq!(v.accepts_ims_signin(), ims, "{s}");
            assert_eq!(v.accepts_bearer_tokens(), bearer, "{s} bearer");
            assert_eq!(v.supports_restrictions(), restrictions, "{s} restrictions");
            assert_eq!(v.native_auth(), native, "{s} native");
        }
    }

    #[test]
    fn upgrades_move_forward_and_say_what_changes() {
        assert!(b("7.4.1").upgrade_changes(&b("7.3.5")).is_err());
        assert!(b("7.4.1").upgrade_changes(&b("7.4.1")).is_err());
        let to_86 = b("7.4.1").upgrade_changes(&b("8.6.0")).unwrap();
        assert!(to_86.iter().any(|c| c.contains("allow-list")), "{to_86:?}");
        let to_741 = b("7.3.1").upgrade_changes(&b("7.4.1")).unwrap();
        assert_eq!(to_741.len(), 2, "{to_741:?}");
        // 7.3.5 accepts bearer tokens, 7.4.0 does not: the loss is said, not hidden.
        let to_740 = b("7.3.5").upgrade_changes(&b("7.4.0")).unwrap();
        assert!(to_740[0].contains("no longer accepted"), "{to_740:?}");
    }

    #[test]
    fn parsing_and_order() {
        assert_eq!(b("7.3.2.IMS").to_string(), "7.3.2.IMS");
        assert_eq!(b("8.6").to_string(), "8.6.0");
        assert!(b("7.3.2") < b("7.3.2.IMS"));
        assert!(b("7.3.2.IMS") < b("7.3.3"));
        assert!(b("7.4.1") < b("8.5.0"));
        for bad in [
            "",
            "7",
            "7.x.1",
            "7.4.1.2",
            "7.4.1.IMS",
            "-7.4.1",
            "7..1",
            "99999.1",
        ] {
            assert!(bad.parse::<Build>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn display_parses_back(major in 0u16..100, minor in 0u16..100, patch in 0u16..100) {
            let v = Build::new(major, minor, patch);
            prop_assert_eq!(v.to_string().parse::<Build>().unwrap(), v);
        }

        #[test]
        fn parse_is_total(s in ".{0,20}") {
            let _ = s.parse::<Build>();
        }
    }
}
