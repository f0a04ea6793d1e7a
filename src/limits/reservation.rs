//! Tokens reserved at admission, settled when the response ends.

use std::sync::Arc;

use futures_util::future::join_all;

use super::store::{Fit, Update};
use super::{Limiter, signed};

/// Tokens reserved at admission; `settle` replaces them with what the request used.
pub struct Reservation {
    pub(super) limiter: Arc<Limiter>,
    /// The token windows' items and their TTLs.
    pub(super) items: Vec<(String, i64)>,
    pub(super) tokens: u64,
}

impl Reservation {
    /// Replaces the reservation by `used` tokens in every token window; `false` if the store
    /// failed (the reservation then stays, as it does when no usage arrives).
    pub async fn settle(self, used: u64) -> bool {
        let delta = signed(used).saturating_sub(signed(self.tokens));
        if delta == 0 {
            return true;
        }
        let store = &self.limiter.store;
        let written = join_all(self.items.iter().map(|(item, expires_at)| {
            store.update(Update {
                item,
                expires_at: *expires_at,
                requests: 0,
                tokens: delta,
                fit: Fit::default(),
            })
        }))
        .await;
        if delta < 0 {
            let items = self.items.iter().map(|(item, _)| item.as_str());
            self.limiter.refusals.forget(items);
        }
        let mut settled = true;
        for err in written.into_iter().filter_map(Result::err) {
            tracing::warn!(store = store.kind(), error = %err, "could not settle a request's tokens; its reservation stays charged");
            settled = false;
        }
        settled
    }
}
