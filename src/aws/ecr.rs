//! ECR: does an image exist? (the preflight's image check). The region and registry come from the image URI, so
//! an image in another region or account is looked up where it lives.

use aws_sdk_ecr::types::ImageIdentifier;
use aws_sdk_ecr::Client;

use super::AwsError;
use crate::version::split_image;

/// An image reference in an ECR registry: `<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>` (or
/// `@sha256:...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrImage {
    pub account: String,
    pub region: String,
    pub repository: String,
    pub reference: ImageRef,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    Tag(String),
    Digest(String),
}

/// Pure: the ECR coordinates of an image, or why it is not an ECR image this check can look up.
pub fn parse(image: &str) -> Result<EcrImage, String> {
    let (host, rest) = image
        .split_once('/')
        .ok_or_else(|| "not in an ECR registry (a Docker Hub image)".to_string())?;
    let labels: Vec<&str> = host.split('.').collect();
    let ecr = labels.len() >= 6
        && labels[1] == "dkr"
        && labels[2] == "ecr"
        && labels[4] == "amazonaws"
        && labels[0].len() == 12
        && labels[0].chars().all(|c| c.is_ascii_digit());
    if !ecr {
        return Err(format!(
            "registry {host} is not an ECR registry (<account>.dkr.ecr.<region>.amazonaws.com)"
        ));
    }
    let reference = match rest.split_once('@') {
        Some((_, digest)) => ImageRef::Digest(digest.to_string()),
        None => match split_image(rest).1 {
            Some(tag) => ImageRef::Tag(tag.to_string()),
            None => ImageRef::Tag("latest".to_string()),
        },
    };
    let repository = split_image(rest.split('@').next().unwrap_or(rest))
        .0
        .to_string();
    Ok(EcrImage {
        account: labels[0].to_string(),
        region: labels[3].to_string(),
        repository,
        reference,
    })
}

impl std::fmt::Display for EcrImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reference {
            ImageRef::Tag(t) => write!(f, "{}:{t}", self.repository),
            ImageRef::Digest(d) => write!(f, "{}@{d}", self.repository),
        }
    }
}

/// Whether the image is in its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Presence {
    Found,
    /// Not there (yet): the tag, or the whole repository, is missing.
    Missing(String),
}

/// BatchGetImage for one image: found, missing (with ECR's reason), or the AWS error (AccessDenied, ...).
pub async fn presence(client: &Client, image: &EcrImage) -> Result<Presence, AwsError> {
    let id = match &image.reference {
        ImageRef::Tag(t) => ImageIdentifier::builder().image_tag(t).build(),
        ImageRef::Digest(d) => ImageIdentifier::builder().image_digest(d).build(),
    };
    let out = client
        .batch_get_image()
        .registry_id(&image.account)
        .repository_name(&image.repository)
        .image_ids(id)
        .accepted_media_types("application/vnd.docker.distribution.manifest.v2+json")
        .accepted_media_types("application/vnd.oci.image.manifest.v1+json")
        .accepted_media_types("application/vnd.oci.image.index.v1+json")
        .accepted_media_types("application/vnd.docker.distribution.manifest.list.v2+json")
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            let e = AwsError::from_sdk("ECR BatchGetImage", image.to_string(), e);
            if is_repository_not_found(&e) {
                return Ok(Presence::Missing(format!(
                    "repository {} does not exist in registry {}",
                    image.repository, image.account
                )));
            }
            return Err(e);
        }
    };
    if !out.images().is_empty() {
        return Ok(Presence::Found);
    }
    let why = out
        .failures()
        .first()
        .map(|f| {
            format!(
                "{}{}",
                f.failure_code().map(|c| c.as_str()).unwrap_or("not found"),
                f.failure_reason()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            )
        })
        .unwrap_or_else(|| "not found".to_string());
    Ok(Presence::Missing(why))
}

pub fn is_repository_not_found(e: &AwsError) -> bool {
    e.is("RepositoryNotFoundException")
}

/// Access denied: the check cannot tell, and says which permission is missing.
pub fn is_access_denied(e: &AwsError) -> bool {
    e.is("AccessDeniedException") || e.is("AccessDenied")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_images_and_others() {
        let e = parse("123456789012.dkr.ecr.eu-central-1.amazonaws.com/app:core-v1.2.3").unwrap();
        assert_eq!(
            e,
            EcrImage {
                account: "123456789012".into(),
                region: "eu-central-1".into(),
                repository: "app".into(),
                reference: ImageRef::Tag("core-v1.2.3".into()),
            }
        );
        let d = parse("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/api@sha256:abc").unwrap();
        assert_eq!(d.repository, "team/api");
        assert_eq!(d.reference, ImageRef::Digest("sha256:abc".into()));
        let cn = parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/app:x").unwrap();
        assert_eq!(cn.region, "cn-north-1");
        for other in [
            "ghcr.io/notai-tech/nudenet:3.4",
            "nginx:1.27",
            "public.ecr.aws/nginx/nginx:1",
            "localhost:5000/app:v1",
            "12345.dkr.ecr.eu-central-1.amazonaws.com/app:v1",
        ] {
            assert!(parse(other).is_err(), "{other}");
        }
    }
}
