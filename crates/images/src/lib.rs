//! gantry's images: build each image once, then promote that exact image by digest.
//!
//! An OCI image is a tree of content-addressed documents in a registry: a
//! *manifest* lists a *config* blob (platform, entrypoint, env, the layers'
//! uncompressed digests) and *layer* blobs (compressed tars); an *index* lists
//! per-platform manifests. A tag is a movable name for a manifest; a *digest*
//! (`sha256:` of the manifest's bytes) is the image's identity. This crate holds:
//!
//! - [`Reference`]: `[registry/]repo[:tag][@sha256:…]`, validated and normalised
//!   like the Docker CLI (`httpd` is `docker.io/library/httpd:latest`).
//! - [`RegistryClient`]: the distribution API over HTTP(S) — blobs, manifests,
//!   tags, cross-repository mounts, the Docker token flow, retry of 5xx.
//! - [`build_image`]: a daemonless build of a directory (plus an optional base
//!   image) into an OCI image, pushed to a registry.
//! - [`promote`]: copying an image to another name or registry without
//!   rebuilding it.
//! - [`ImageDefinition`] and [`ImageDetail`]: the `imagedefinitions.json` and
//!   `imageDetail.json` files that hand an image to a deploy.
//!
//! # Invariants
//!
//! - **Builds are reproducible.** The same context, spec and base give the same
//!   digest on any machine: layers are sorted tars with fixed times and owners,
//!   gzip at a fixed level with an empty header, and the config and manifest are
//!   canonical JSON (sorted keys) with a fixed `created` time and no host paths.
//! - **Promotion preserves the digest.** Manifests travel as the registry's exact
//!   bytes and are never re-serialised; the digest after a promotion is checked
//!   to equal the source's. An expected digest guards against a tag that moved
//!   between testing and promotion.
//! - **Nothing is sent twice.** Blobs are looked for before they are sent; within
//!   one registry they are mounted, not copied; a manifest the tag already names
//!   is not re-sent.
//! - **Blobs are streamed, never held whole in memory**: uploads stream from
//!   files (in chunks when large), downloads hash as they stream, and copies
//!   between registries pipe a download into an upload.
//! - **Every error names the image** (or registry) it is about, and carries the
//!   registry's own error text verbatim.

mod build;
mod client;
mod definitions;
mod digest;
pub mod layer;
pub mod manifest;
mod promote;
mod reference;

pub use build::{
    BuildError, DEFAULT_ARCHITECTURE, DEFAULT_OS, ImageResult, ImageSpec, build_image,
};
pub use client::{
    ClientOptions, Credentials, RawManifest, RegistryClient, RegistryError, RetryPolicy,
};
pub use definitions::{
    DefinitionsError, IMAGE_DEFINITIONS_FILE, IMAGE_DETAIL_FILE, ImageDefinition, ImageDetail,
    MAX_DEFINITIONS_BYTES, image_definitions_json, image_detail_json, parse_image_definitions,
    parse_image_detail, read_image_definitions, read_image_detail, write_image_definitions,
    write_image_detail,
};
pub use digest::{Digest, DigestError};
pub use promote::{PromoteError, PromoteResult, promote};
pub use reference::{DOCKER_HUB, Reference, ReferenceError};
