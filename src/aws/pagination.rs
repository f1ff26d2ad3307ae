//! The one guard every paginated listing goes through (sessions, the monthly-users backfill,
//! portal discovery): a listing stops with an error when the service repeats a `nextToken` (the
//! Rust SDK's own paginator stops silently there) or after `max_pages` pages.

use std::collections::HashSet;

/// Why a listing was stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageStop {
    /// The service sent a token it had sent before: the listing would loop.
    #[error("the service repeated a nextToken")]
    RepeatedToken,
    /// More pages than allowed.
    #[error("more than max_pages={0} pages")]
    TooManyPages(u32),
}

/// Pages and tokens seen by one listing.
#[derive(Debug, Clone, Default)]
pub struct PageGuard {
    tokens: HashSet<String>,
    pages: u32,
}

impl PageGuard {
    /// A guard for a new listing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Pages accepted so far.
    pub fn pages(&self) -> u32 {
        self.pages
    }

    /// Accounts for one page received with `next` as its `nextToken`: the token to ask for next
    /// (`None` when the listing is complete), or why the listing must stop.
    pub fn next(
        &mut self,
        next: Option<String>,
        max_pages: u32,
    ) -> Result<Option<String>, PageStop> {
        self.pages = self.pages.saturating_add(1);
        let Some(token) = next.filter(|t| !t.is_empty()) else {
            return Ok(None);
        };
        if self.pages >= max_pages {
            return Err(PageStop::TooManyPages(max_pages));
        }
        if !self.tokens.insert(token.clone()) {
            return Err(PageStop::RepeatedToken);
        }
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listing_ends_on_an_empty_or_missing_token() {
        let mut g = PageGuard::new();
        assert_eq!(g.next(Some("a".into()), 10), Ok(Some("a".into())));
        assert_eq!(g.next(Some(String::new()), 10), Ok(None));
        assert_eq!(g.pages(), 2);
        assert_eq!(PageGuard::new().next(None, 10), Ok(None));
    }

    #[test]
    fn a_repeated_token_stops_the_listing() {
        let mut g = PageGuard::new();
        assert_eq!(g.next(Some("a".into()), 10), Ok(Some("a".into())));
        assert_eq!(g.next(Some("b".into()), 10), Ok(Some("b".into())));
        assert_eq!(g.next(Some("a".into()), 10), Err(PageStop::RepeatedToken));
    }

    #[test]
    fn max_pages_bounds_an_endless_listing() {
        let mut g = PageGuard::new();
        for i in 0..2 {
            assert!(g.next(Some(format!("t{i}")), 3).is_ok());
        }
        assert_eq!(g.next(Some("t2".into()), 3), Err(PageStop::TooManyPages(3)));
        // The last allowed page may still end the listing.
        let mut g = PageGuard::new();
        for i in 0..2 {
            assert!(g.next(Some(format!("t{i}")), 3).is_ok());
        }
        assert_eq!(g.next(None, 3), Ok(None));
    }
}
