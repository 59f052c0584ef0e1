//! What a request may ask for that the gateway keeps its own way: storage classes, server-side
//! encryption, object versions and ACLs. Each is either honoured as S3 would (within what the
//! gateway is) or refused with S3's error, never silently ignored in a way that surprises the
//! client: an object sent with a customer key (SSE-C) must not be stored readable without it.

use s3s::dto;
use s3s::{s3_error, S3Result};

/// The storage classes S3 names. Every object lives the same way here (erasure-coded on the
/// nodes); a class is accepted so that clients that set one keep working, and listings show
/// `STANDARD`.
const STORAGE_CLASSES: &[&str] = &[
    dto::StorageClass::STANDARD,
    dto::StorageClass::REDUCED_REDUNDANCY,
    dto::StorageClass::STANDARD_IA,
    dto::StorageClass::ONEZONE_IA,
    dto::StorageClass::INTELLIGENT_TIERING,
    dto::StorageClass::GLACIER,
    dto::StorageClass::DEEP_ARCHIVE,
    dto::StorageClass::GLACIER_IR,
    dto::StorageClass::OUTPOSTS,
    dto::StorageClass::SNOW,
    dto::StorageClass::EXPRESS_ONEZONE,
];

/// What a write (PutObject, CreateMultipartUpload, CopyObject's destination) asks for.
pub(super) struct WriteOptions<'a> {
    pub storage_class: &'a Option<dto::StorageClass>,
    pub encryption: &'a Option<dto::ServerSideEncryption>,
    pub kms_key: bool,
    pub customer_key: &'a Option<String>,
    pub acl: Acl<'a>,
}

impl WriteOptions<'_> {
    /// `Ok` if the gateway can store the object as asked. Every object is encrypted by the
    /// gateway (AES-256-GCM with a per-object key), so `AES256` is what it does anyway; KMS keys
    /// and customer-provided keys are not supported and refused (501), as is an unknown method
    /// or class (400).
    pub(super) fn check(&self) -> S3Result<()> {
        if let Some(class) = self.storage_class {
            if !STORAGE_CLASSES.contains(&class.as_str()) {
                return Err(s3_error!(
                    InvalidStorageClass,
                    "The storage class you specified is not valid"
                ));
            }
        }
        customer_key(self.customer_key)?;
        self.acl.check(None)?;
        match self
            .encryption
            .as_ref()
            .map(dto::ServerSideEncryption::as_str)
        {
            None | Some(dto::ServerSideEncryption::AES256) if !self.kms_key => Ok(()),
            None | Some(dto::ServerSideEncryption::AES256) => Err(kms()),
            Some(dto::ServerSideEncryption::AWS_KMS | dto::ServerSideEncryption::AWS_KMS_DSSE) => {
                Err(kms())
            }
            Some(other) => Err(s3_error!(
                InvalidArgument,
                "The encryption method specified is not supported: {other}"
            )),
        }
    }
}

fn kms() -> s3s::S3Error {
    s3_error!(
        NotImplemented,
        "Server-side encryption with KMS keys is not supported: the gateway encrypts every object with its own keys (AES256)"
    )
}

/// Refuses customer-provided encryption keys (SSE-C) on any request that carries one.
pub(super) fn customer_key(algorithm: &Option<String>) -> S3Result<()> {
    match algorithm {
        None => Ok(()),
        Some(_) => Err(s3_error!(
            NotImplemented,
            "Server-side encryption with customer-provided keys is not supported"
        )),
    }
}

/// Buckets here are not versioned: the only version of an object is `null`, as S3 calls the
/// version of an object in an unversioned bucket. Any other id names a version that does not
/// exist.
pub(super) fn version(id: Option<&str>) -> S3Result<()> {
    match id {
        None | Some("null") => Ok(()),
        Some(_) => Err(s3_error!(
            NoSuchVersion,
            "The specified version does not exist."
        )),
    }
}

/// The ACL a request sets. Buckets here behave as S3 buckets whose Object Ownership is
/// "bucket owner enforced" (S3's default for new buckets since 2023): ACLs are disabled, the
/// owner has full control of everything, reading an ACL says so, and setting one that says
/// anything else fails with `AccessControlListNotSupported`.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Acl<'a> {
    /// `x-amz-acl`.
    pub canned: Option<&'a str>,
    /// Any `x-amz-grant-*` header.
    pub grants: bool,
}

/// The canned ACLs that grant the owner full control and nobody anything.
const OWNER_ONLY: &[&str] = &["private", "bucket-owner-full-control"];

impl Acl<'_> {
    /// `Ok` if the ACL (with `policy`, an AccessControlPolicy body) gives the owner `owner_id`
    /// full control and nobody else anything.
    pub(super) fn check(&self, policy: Option<(&dto::AccessControlPolicy, &str)>) -> S3Result<()> {
        let canned_ok = self.canned.is_none_or(|c| OWNER_ONLY.contains(&c));
        let policy_ok = policy.is_none_or(|(p, owner_id)| {
            p.grants.iter().flatten().all(|g| {
                g.permission.as_ref().map(dto::Permission::as_str)
                    == Some(dto::Permission::FULL_CONTROL)
                    && g.grantee
                        .as_ref()
                        .is_some_and(|who| who.id.as_deref() == Some(owner_id))
            })
        });
        if canned_ok && policy_ok && !self.grants {
            return Ok(());
        }
        let mut e = s3s::S3Error::with_message(
            s3s::S3ErrorCode::Custom("AccessControlListNotSupported".into()),
            "The bucket does not allow ACLs",
        );
        e.set_status_code(axum::http::StatusCode::BAD_REQUEST);
        Err(e)
    }
}

/// The ACL of every bucket and object: `owner` has full control.
pub(super) fn owner_acl(owner: &dto::Owner) -> dto::Grants {
    vec![dto::Grant {
        grantee: Some(dto::Grantee {
            display_name: owner.display_name.clone(),
            email_address: None,
            id: owner.id.clone(),
            type_: dto::Type::from_static(dto::Type::CANONICAL_USER),
            uri: None,
        }),
        permission: Some(dto::Permission::from_static(dto::Permission::FULL_CONTROL)),
    }]
}

/// [`Acl`] of a request's input (every S3 input that sets an ACL names these fields alike;
/// `extra` names grant fields only some have, such as `grant_write`).
macro_rules! acl_of {
    ($input:expr $(, $extra:ident)*) => {
        $crate::s3::features::Acl {
            canned: $input.acl.as_ref().map(|a| a.as_str()),
            grants: $input.grant_full_control.is_some()
                || $input.grant_read.is_some()
                || $input.grant_read_acp.is_some()
                || $input.grant_write_acp.is_some()
                $(|| $input.$extra.is_some())*,
        }
    };
}

/// [`WriteOptions`] of a write's input (PutObject, CreateMultipartUpload and CopyObject name
/// these fields alike).
macro_rules! write_options {
    ($input:expr) => {
        $crate::s3::features::WriteOptions {
            storage_class: &$input.storage_class,
            encryption: &$input.server_side_encryption,
            kms_key: $input.ssekms_key_id.is_some(),
            customer_key: &$input.sse_customer_algorithm,
            acl: $crate::s3::features::acl_of!($input),
        }
    };
}
pub(super) use {acl_of, write_options};

#[cfg(test)]
mod tests {
    use super::*;

    fn write(class: Option<&str>, sse: Option<&str>, kms_key: bool, customer: bool) -> String {
        let class = class.map(|c| dto::StorageClass::from(c.to_string()));
        let sse = sse.map(|s| dto::ServerSideEncryption::from(s.to_string()));
        let customer = customer.then(|| "AES256".to_string());
        match (WriteOptions {
            storage_class: &class,
            encryption: &sse,
            kms_key,
            customer_key: &customer,
            acl: Acl::default(),
        })
        .check()
        {
            Ok(()) => "ok".into(),
            Err(e) => e.code().as_str().to_string(),
        }
    }

    #[test]
    fn writes_get_what_they_ask_for_or_s3s_error() {
        assert_eq!(write(None, None, false, false), "ok");
        assert_eq!(
            write(Some("STANDARD_IA"), Some("AES256"), false, false),
            "ok"
        );
        assert_eq!(write(Some("GLACIER"), None, false, false), "ok");
        assert_eq!(
            write(Some("BOGUS"), None, false, false),
            "InvalidStorageClass"
        );
        assert_eq!(write(None, Some("aws:kms"), false, false), "NotImplemented");
        assert_eq!(write(None, Some("AES256"), true, false), "NotImplemented");
        assert_eq!(write(None, None, false, true), "NotImplemented");
        assert_eq!(write(None, Some("rot13"), false, false), "InvalidArgument");
    }

    #[test]
    fn only_acls_that_say_the_owner_has_everything_are_taken() {
        let code = |acl: Acl<'_>, policy: Option<(&dto::AccessControlPolicy, &str)>| match acl
            .check(policy)
        {
            Ok(()) => "ok".to_string(),
            Err(e) => e.code().as_str().to_string(),
        };
        let canned = |c| Acl {
            canned: Some(c),
            grants: false,
        };
        assert_eq!(code(Acl::default(), None), "ok");
        assert_eq!(code(canned("private"), None), "ok");
        assert_eq!(code(canned("bucket-owner-full-control"), None), "ok");
        assert_eq!(
            code(canned("public-read"), None),
            "AccessControlListNotSupported"
        );
        let grants = Acl {
            canned: None,
            grants: true,
        };
        assert_eq!(code(grants, None), "AccessControlListNotSupported");
        let owner = dto::Owner {
            display_name: Some("gateway".into()),
            id: Some("me".into()),
        };
        let mine = dto::AccessControlPolicy {
            grants: Some(owner_acl(&owner)),
            owner: Some(owner.clone()),
        };
        assert_eq!(code(Acl::default(), Some((&mine, "me"))), "ok");
        assert_eq!(
            code(Acl::default(), Some((&mine, "someone else"))),
            "AccessControlListNotSupported"
        );
    }

    #[test]
    fn only_the_null_version_exists() {
        assert!(version(None).is_ok());
        assert!(version(Some("null")).is_ok());
        assert_eq!(
            version(Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"))
                .unwrap_err()
                .code()
                .as_str(),
            "NoSuchVersion"
        );
    }
}
