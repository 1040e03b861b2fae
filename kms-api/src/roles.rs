//! The roles of one API client: `admin` alone, `issuer` alone, or one or
//! both data roles (`generate`, `decrypt`): the AWS Encryption SDK encrypts
//! and decrypts with one credential. Stored and shown as a comma-separated
//! list (`generate,decrypt`), so a one-role client reads as it always did.

use crate::Role;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Roles(u8);

fn bit(role: Role) -> u8 {
    match role {
        Role::Admin => 1,
        Role::Generate => 2,
        Role::Decrypt => 4,
        Role::Issuer => 8,
    }
}

impl Roles {
    pub fn one(role: Role) -> Self {
        Self(bit(role))
    }

    /// A valid set: not empty, and admin or issuer only alone.
    pub fn new(roles: &[Role]) -> Result<Self, &'static str> {
        if roles.is_empty() {
            return Err("a client needs at least one role");
        }
        if roles.len() > 1 && roles.iter().any(|r| !r.is_data_role()) {
            return Err("only the data roles (generate, decrypt) may be combined");
        }
        Ok(Self(roles.iter().fold(0, |set, r| set | bit(*r))))
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & bit(role) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| self.contains(*r))
    }

    /// `generate,decrypt`; one role reads as that role's name.
    pub fn as_string(self) -> String {
        self.iter().map(Role::as_str).collect::<Vec<_>>().join(",")
    }

    /// The names in `as_string` form (or a list of them), validated.
    pub fn parse(text: &str) -> Option<Self> {
        let roles: Option<Vec<Role>> = text.split(',').map(|r| Role::parse(r.trim())).collect();
        Self::new(&roles?).ok()
    }
}

impl From<Role> for Roles {
    fn from(role: Role) -> Self {
        Self::one(role)
    }
}

impl std::fmt::Debug for Roles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Roles({})", self.as_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_roles_combine_and_the_others_stand_alone() {
        let both = Roles::new(&[Role::Decrypt, Role::Generate]).unwrap();
        assert_eq!(both.as_string(), "generate,decrypt");
        assert!(both.contains(Role::Generate) && both.contains(Role::Decrypt));
        assert!(!both.contains(Role::Admin));
        assert_eq!(Roles::parse("generate,decrypt"), Some(both));
        assert_eq!(Roles::parse("decrypt"), Some(Roles::one(Role::Decrypt)));
        assert_eq!(Roles::one(Role::Issuer).as_string(), "issuer");
        for bad in ["", "admin,generate", "issuer,decrypt", "generate,nope", ","] {
            assert_eq!(Roles::parse(bad), None, "{bad}");
        }
        assert!(Roles::new(&[]).is_err());
    }
}
