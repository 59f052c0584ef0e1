//! SigV4 secrets for s3s: looked up in the metadata and unwrapped with the master key.

use std::sync::Arc;

use chunker::MasterKey;
use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

use crate::meta::Meta;

/// The access keys stored in the metadata.
#[derive(Debug, Clone)]
pub struct StoredKeys {
    pub meta: Arc<Meta>,
    pub master: Arc<MasterKey>,
}

#[async_trait::async_trait]
impl S3Auth for StoredKeys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let record = match self.meta.access_key(access_key) {
            // A disabled key is answered as S3 answers an inactive one.
            Ok(Some(r)) if !r.disabled => r,
            Ok(_) => return Err(s3_error!(InvalidAccessKeyId)),
            Err(e) => {
                tracing::error!(error = %e, "reading an access key failed");
                return Err(s3_error!(InternalError));
            }
        };
        match crate::keys::secret(&self.master, &record) {
            Ok(secret) => Ok(SecretKey::from(secret)),
            Err(e) => {
                tracing::error!(error = %e, "an access key's secret does not unwrap (wrong master key?)");
                Err(s3_error!(InternalError))
            }
        }
    }
}
