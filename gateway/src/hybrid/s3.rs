//! [`RemoteStore`] on any S3 service, through `aws-sdk-s3`.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::{BehaviorVersion, Region};
use aws_sdk_s3::error::SdkError;
use aws_sdk_s3::primitives::{ByteStream as SdkBody, DateTime, DateTimeFormat};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart, Tag, Tagging};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use super::{
    ByteStream, Credentials, RemoteConfig, RemoteError, RemoteListing, RemoteObject, RemoteStore,
    UploadMeta,
};

/// Sets an upload's content type, user metadata and stored headers on a PutObject or
/// CreateMultipartUpload request (builders of different types with the same setters).
macro_rules! with_upload_meta {
    ($builder:expr, $meta:expr) => {
        $builder
            .set_content_type($meta.content_type.clone())
            .set_metadata(Some($meta.user_metadata.clone().into_iter().collect()))
            .set_cache_control(header($meta, "cache-control"))
            .set_content_disposition(header($meta, "content-disposition"))
            .set_content_encoding(header($meta, "content-encoding"))
            .set_content_language(header($meta, "content-language"))
            .set_expires(expires($meta))
            .set_tagging(tagging(&$meta.tags))
    };
}

/// Bodies up to this size go in one PUT; larger ones as multipart uploads with parts of at
/// least this size (so at most two parts' worth of memory per upload).
pub const PART_SIZE: u64 = 8 << 20;
/// S3's limit on parts per upload.
const MAX_PARTS: u64 = 10_000;

/// A remote bucket on an S3 service.
#[derive(Debug, Clone)]
pub struct S3Remote {
    client: Client,
    bucket: String,
}

impl S3Remote {
    /// A client for `config`'s bucket. Nothing is contacted yet: a wrong endpoint or key shows
    /// on the first request.
    pub async fn connect(config: &RemoteConfig) -> S3Remote {
        let mut b = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .force_path_style(config.path_style)
            .timeout_config(
                aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(60))
                    .build(),
            );
        if let Some(endpoint) = &config.endpoint {
            b = b.endpoint_url(endpoint);
        }
        match &config.credentials {
            Credentials::Static {
                access_key_id,
                secret_access_key,
                session_token,
            } => {
                b = b.credentials_provider(aws_sdk_s3::config::Credentials::new(
                    access_key_id,
                    secret_access_key.clone().unwrap_or_default(),
                    session_token.clone(),
                    None,
                    "gateway-remote-config",
                ));
            }
            Credentials::File { path, profile } => {
                use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
                let files = EnvConfigFiles::builder()
                    .with_file(EnvConfigFileKind::Credentials, path)
                    .build();
                let mut p = aws_config::profile::ProfileFileCredentialsProvider::builder()
                    .profile_files(files);
                if let Some(name) = profile {
                    p = p.profile_name(name);
                }
                b = b.credentials_provider(p.build());
            }
            Credentials::Environment { profile } => {
                let mut chain =
                    aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                        .region(Region::new(config.region.clone()));
                if let Some(name) = profile {
                    chain = chain.profile_name(name);
                }
                b = b.credentials_provider(chain.build().await);
            }
            Credentials::Anonymous => {
                b = b.allow_no_auth();
            }
        }
        S3Remote {
            client: Client::from_conf(b.build()),
            bucket: config.bucket.clone(),
        }
    }

    async fn put_multipart(
        &self,
        key: &str,
        meta: &UploadMeta,
        size: u64,
        mut body: ByteStream,
    ) -> Result<(), RemoteError> {
        let part_size = PART_SIZE.max(size.div_ceil(MAX_PARTS).next_multiple_of(1 << 20));
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key);
        let created = with_upload_meta!(created, meta)
            .send()
            .await
            .map_err(classify)?;
        let upload_id = created
            .upload_id()
            .ok_or_else(|| RemoteError::Corrupt("no upload id in the answer".into()))?
            .to_string();
        let result = async {
            let mut parts = Vec::new();
            let mut buf = BytesMut::with_capacity(part_size as usize);
            let mut sent = 0u64;
            loop {
                let next = body.try_next().await?;
                let last = next.is_none();
                if let Some(chunk) = next {
                    buf.extend_from_slice(&chunk);
                }
                while buf.len() as u64 >= part_size || (last && !buf.is_empty()) {
                    let take = buf.len().min(part_size as usize);
                    let part = buf.split_to(take).freeze();
                    sent += part.len() as u64;
                    let number = i32::try_from(parts.len() + 1)
                        .map_err(|_| RemoteError::Source("too many parts".into()))?;
                    parts.push(self.upload_part(key, &upload_id, number, part).await?);
                }
                if last {
                    break;
                }
            }
            if sent != size {
                return Err(RemoteError::Source(format!(
                    "the object gave {sent} bytes, {size} were expected"
                )));
            }
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(classify)?;
            Ok(())
        }
        .await;
        if result.is_err() {
            // Best effort: an upload left behind costs storage until the remote's lifecycle
            // rules remove it, so say so if it cannot be aborted.
            if let Err(e) = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(&upload_id)
                .send()
                .await
            {
                tracing::warn!(key, error = %classify(e), "could not abort a failed remote multipart upload");
            }
        }
        result
    }

    async fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        part: Bytes,
    ) -> Result<CompletedPart, RemoteError> {
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .part_number(number)
            .body(SdkBody::from(part))
            .send()
            .await
            .map_err(classify)?;
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag().map(str::to_string))
            .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
            .set_checksum_crc32_c(out.checksum_crc32_c().map(str::to_string))
            .set_checksum_crc64_nvme(out.checksum_crc64_nvme().map(str::to_string))
            .set_checksum_sha1(out.checksum_sha1().map(str::to_string))
            .set_checksum_sha256(out.checksum_sha256().map(str::to_string))
            .build())
    }
}

/// Sorts an SDK failure into what the caller can do about it.
fn classify<E>(e: SdkError<E, HttpResponse>) -> RemoteError
where
    E: std::error::Error + Send + Sync + 'static,
{
    let text = aws_sdk_s3::error::DisplayErrorContext(&e).to_string();
    match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            RemoteError::Unavailable(text)
        }
        SdkError::ServiceError(s) => match s.raw().status().as_u16() {
            404 => RemoteError::NotFound,
            501 => RemoteError::Unsupported(text),
            code if code >= 500 || code == 429 || code == 408 => RemoteError::Unavailable(text),
            _ => RemoteError::Refused(text),
        },
        _ => RemoteError::Refused(text),
    }
}

/// A tag set as an `x-amz-tagging` header (`k1=v1&k2=v2`, URL-encoded); none for no tags.
fn tagging(tags: &BTreeMap<String, String>) -> Option<String> {
    let pairs: Vec<String> = tags
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                crate::s3::percent_encode(k, b""),
                crate::s3::percent_encode(v, b"")
            )
        })
        .collect();
    (!pairs.is_empty()).then(|| pairs.join("&"))
}

fn header(meta: &UploadMeta, name: &str) -> Option<String> {
    meta.headers.get(name).cloned()
}

fn expires(meta: &UploadMeta) -> Option<DateTime> {
    let text = meta.headers.get("expires")?;
    DateTime::from_str(text, DateTimeFormat::HttpDate).ok()
}

fn remote_object(
    size: Option<i64>,
    etag: Option<&str>,
    modified: Option<&DateTime>,
    content_type: Option<&str>,
    metadata: Option<&std::collections::HashMap<String, String>>,
) -> Result<RemoteObject, RemoteError> {
    let size = size
        .and_then(|s| u64::try_from(s).ok())
        .ok_or_else(|| RemoteError::Corrupt("no valid Content-Length".into()))?;
    Ok(RemoteObject {
        size,
        etag: etag.unwrap_or_default().trim_matches('"').to_string(),
        last_modified_ms: modified
            .and_then(|d| d.to_millis().ok())
            .and_then(|ms| u64::try_from(ms).ok())
            .unwrap_or_default(),
        content_type: content_type.map(str::to_string),
        user_metadata: metadata
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default(),
        headers: Default::default(),
    })
}

#[async_trait::async_trait]
impl RemoteStore for S3Remote {
    async fn head(&self, key: &str) -> Result<Option<RemoteObject>, RemoteError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(o) => {
                let mut found = remote_object(
                    o.content_length(),
                    o.e_tag(),
                    o.last_modified(),
                    o.content_type(),
                    o.metadata(),
                )?;
                for (name, value) in [
                    ("cache-control", o.cache_control()),
                    ("content-disposition", o.content_disposition()),
                    ("content-encoding", o.content_encoding()),
                    ("content-language", o.content_language()),
                    ("expires", o.expires_string()),
                ] {
                    if let Some(v) = value {
                        found.headers.insert(name.to_string(), v.to_string());
                    }
                }
                Ok(Some(found))
            }
            Err(e) => match classify(e) {
                RemoteError::NotFound => Ok(None),
                e => Err(e),
            },
        }
    }

    async fn get(&self, key: &str, range: Range<u64>) -> Result<ByteStream, RemoteError> {
        let want = range.end - range.start;
        if want == 0 {
            return Ok(futures::stream::empty().boxed());
        }
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={}-{}", range.start, range.end - 1))
            .send()
            .await
            .map_err(classify)?;
        if out.content_length().and_then(|n| u64::try_from(n).ok()) != Some(want) {
            return Err(RemoteError::Corrupt(format!(
                "asked for {want} bytes, the remote announced {:?}",
                out.content_length()
            )));
        }
        let body = out.body;
        let stream = futures::stream::unfold(body, |mut body| async move {
            match body.next().await {
                Some(Ok(b)) => Some((Ok(b), body)),
                Some(Err(e)) => Some((Err(RemoteError::Unavailable(e.to_string())), body)),
                None => None,
            }
        });
        Ok(stream.boxed())
    }

    async fn put(
        &self,
        key: &str,
        meta: &UploadMeta,
        size: u64,
        mut body: ByteStream,
    ) -> Result<(), RemoteError> {
        if size > PART_SIZE {
            return self.put_multipart(key, meta, size, body).await;
        }
        let mut buf = BytesMut::with_capacity(size as usize);
        while let Some(chunk) = body.try_next().await? {
            if (buf.len() + chunk.len()) as u64 > size {
                return Err(RemoteError::Source(format!(
                    "the object gave more than the {size} bytes expected"
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        if buf.len() as u64 != size {
            return Err(RemoteError::Source(format!(
                "the object gave {} bytes, {size} were expected",
                buf.len()
            )));
        }
        let put = self.client.put_object().bucket(&self.bucket).key(key);
        with_upload_meta!(put, meta)
            .body(SdkBody::from(buf.freeze()))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        after: Option<&str>,
        max: usize,
    ) -> Result<RemoteListing, RemoteError> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .set_delimiter(delimiter.map(str::to_string))
            .set_start_after(after.map(str::to_string))
            .max_keys(i32::try_from(max.min(1000)).unwrap_or(1000))
            .send()
            .await
            .map_err(classify)?;
        let mut listing = RemoteListing {
            truncated: out.is_truncated().unwrap_or(false),
            ..RemoteListing::default()
        };
        for o in out.contents() {
            let Some(key) = o.key() else { continue };
            let found = remote_object(o.size(), o.e_tag(), o.last_modified(), None, None)?;
            listing.objects.push((key.to_string(), found));
        }
        listing.common_prefixes = out
            .common_prefixes()
            .iter()
            .filter_map(|p| p.prefix().map(str::to_string))
            .collect();
        Ok(listing)
    }

    async fn tags(&self, key: &str) -> Result<Vec<(String, String)>, RemoteError> {
        let out = self
            .client
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(classify)?;
        Ok(out
            .tag_set()
            .iter()
            .map(|t| (t.key().to_string(), t.value().to_string()))
            .collect())
    }

    async fn put_tags(
        &self,
        key: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), RemoteError> {
        if tags.is_empty() {
            self.client
                .delete_object_tagging()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(classify)?;
            return Ok(());
        }
        let mut set = Vec::with_capacity(tags.len());
        for (k, v) in tags {
            set.push(
                Tag::builder()
                    .key(k)
                    .value(v)
                    .build()
                    .map_err(|e| RemoteError::Source(e.to_string()))?,
            );
        }
        let tagging = Tagging::builder()
            .set_tag_set(Some(set))
            .build()
            .map_err(|e| RemoteError::Source(e.to_string()))?;
        self.client
            .put_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .tagging(tagging)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<(), RemoteError> {
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify(e) {
                RemoteError::NotFound => Ok(()),
                e => Err(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_travel_url_encoded_in_one_header() {
        let tags: BTreeMap<String, String> = [("a b", "x/y&z=1"), ("é", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(
            tagging(&tags).as_deref(),
            Some("a%20b=x%2Fy%26z%3D1&%C3%A9=")
        );
        assert_eq!(tagging(&BTreeMap::new()), None);
    }
}
