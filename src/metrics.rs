//! Builds the Prometheus text exposition from portal snapshots. Being written.
use bytes::Bytes;

use crate::snapshot::{PortalSnapshot, ReloadStatus};
use std::sync::Arc;

/// Renders the whole exposition.
pub fn render(_portals: &[Arc<PortalSnapshot>], _reload: ReloadStatus) -> Bytes {
    Bytes::new()
}
