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

fn identifier(reference: &ImageRef) -> ImageIdentifier {
    match reference {
        ImageRef::Tag(t) => ImageIdentifier::builder().image_tag(t).build(),
        ImageRef::Digest(d) => ImageIdentifier::builder().image_digest(d).build(),
    }
}

/// Pure: whether ECR's image id names this reference.
fn names(id: Option<&ImageIdentifier>, reference: &ImageRef) -> bool {
    match (id, reference) {
        (Some(id), ImageRef::Tag(t)) => id.image_tag() == Some(t.as_str()),
        (Some(id), ImageRef::Digest(d)) => id.image_digest() == Some(d.as_str()),
        (None, _) => false,
    }
}

/// BatchGetImage for the images of one repository in one call (ECR takes up to 100 ids): for each image, in order,
/// found or missing (with ECR's reason); or the AWS error (AccessDenied, ...). All images must share account,
/// region and repository.
pub async fn presences(client: &Client, images: &[EcrImage]) -> Result<Vec<Presence>, AwsError> {
    let Some(first) = images.first() else {
        return Ok(Vec::new());
    };
    let mut refs: Vec<&ImageRef> = Vec::new();
    for i in images {
        if !refs.contains(&&i.reference) {
            refs.push(&i.reference);
        }
    }
    let out = client
        .batch_get_image()
        .registry_id(&first.account)
        .repository_name(&first.repository)
        .set_image_ids(Some(refs.iter().map(|r| identifier(r)).collect()))
        .accepted_media_types("application/vnd.docker.distribution.manifest.v2+json")
        .accepted_media_types("application/vnd.oci.image.manifest.v1+json")
        .accepted_media_types("application/vnd.oci.image.index.v1+json")
        .accepted_media_types("application/vnd.docker.distribution.manifest.list.v2+json")
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        Err(e) => {
            let e = AwsError::from_sdk("ECR BatchGetImage", first.to_string(), e);
            if is_repository_not_found(&e) {
                let why = format!(
                    "repository {} does not exist in registry {}",
                    first.repository, first.account
                );
                return Ok(images
                    .iter()
                    .map(|_| Presence::Missing(why.clone()))
                    .collect());
            }
            return Err(e);
        }
    };
    let presence = |reference: &ImageRef| {
        if out.images().iter().any(|i| names(i.image_id(), reference)) {
            return Presence::Found;
        }
        let why = out
            .failures()
            .iter()
            .find(|f| names(f.image_id(), reference))
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
        Presence::Missing(why)
    };
    Ok(images.iter().map(|i| presence(&i.reference)).collect())
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
    fn an_image_id_names_its_tag_or_digest() {
        let tag = ImageRef::Tag("core-v1".into());
        let digest = ImageRef::Digest("sha256:ab".into());
        let by_tag = ImageIdentifier::builder().image_tag("core-v1").build();
        let by_digest = ImageIdentifier::builder().image_digest("sha256:ab").build();
        let other = ImageIdentifier::builder().image_tag("core-v2").build();
        let cases = [
            (Some(&by_tag), &tag, true),
            (Some(&other), &tag, false),
            (Some(&by_digest), &digest, true),
            (Some(&by_tag), &digest, false),
            (None, &tag, false),
        ];
        for (id, reference, want) in cases {
            assert_eq!(names(id, reference), want, "{id:?} {reference:?}");
        }
    }

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
