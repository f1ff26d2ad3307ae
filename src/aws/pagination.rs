//! The one guard every paginated listing goes through (sessions, the monthly-users backfill,
//! portal discovery): a listing stops with an error when the service repeats a `nextToken` (the
//! Rust SDK's own paginator stops silently there) or after `max_pages` pages; and the bounds of
//! one page as received ([`check_page`]): a `nextToken` longer than the service model allows is
//! never sent back (the SDK panics on one of about 64 KiB), a page holding more items than the
//! `maxResults` sent is refused. So one listing holds at most `maxResults × max_pages` items.

use std::collections::HashSet;

/// Longest `nextToken` accepted, in characters: the service model's bound (`ListSessions` and
/// `ListPortals`: 1 to 2048).
pub const MAX_NEXT_TOKEN_CHARS: usize = 2048;

/// Why a listing was stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageStop {
    /// The service sent a token it had sent before: the listing would loop.
    #[error("the service repeated a nextToken")]
    RepeatedToken,
    /// More pages than allowed.
    #[error("more than max_pages={0} pages")]
    TooManyPages(u32),
    /// A `nextToken` longer than [`MAX_NEXT_TOKEN_CHARS`]: never sent back.
    #[error(
        "the service sent a nextToken of {0} characters (at most {MAX_NEXT_TOKEN_CHARS} allowed); it is not sent back"
    )]
    TokenTooLong(usize),
    /// A page with more items than the `maxResults` of its request.
    #[error("the service sent a page of {items} items for maxResults={max_results}")]
    OverfullPage {
        /// Items on the page.
        items: usize,
        /// `maxResults` of the request.
        max_results: i32,
    },
}

/// Length of `token` in characters when it is longer than [`MAX_NEXT_TOKEN_CHARS`].
fn too_long(token: &str) -> Option<usize> {
    // A token of at most that many bytes has at most that many characters: no count needed.
    if token.len() <= MAX_NEXT_TOKEN_CHARS {
        return None;
    }
    let chars = token.chars().count();
    (chars > MAX_NEXT_TOKEN_CHARS).then_some(chars)
}

/// Whether `token` may be sent (as the `nextToken` of a request).
pub fn check_token(token: &str) -> Result<(), PageStop> {
    too_long(token).map_or(Ok(()), |chars| Err(PageStop::TokenTooLong(chars)))
}

/// Checks one page as received: at most `max_results` items (the `maxResults` its request
/// sent), and a `nextToken` that may be sent back.
pub fn check_page(items: usize, max_results: i32, next: Option<&str>) -> Result<(), PageStop> {
    if usize::try_from(max_results).is_ok_and(|max| items > max) {
        return Err(PageStop::OverfullPage { items, max_results });
    }
    next.map_or(Ok(()), check_token)
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
    fn page_bounds_refuse_long_tokens_and_overfull_pages() {
        assert_eq!(check_page(100, 100, Some(&"t".repeat(2048))), Ok(()));
        assert_eq!(check_page(0, 1, None), Ok(()));
        assert_eq!(
            check_page(0, 100, Some(&"t".repeat(2049))),
            Err(PageStop::TokenTooLong(2049))
        );
        assert_eq!(
            check_page(70_000, 100, Some("t")),
            Err(PageStop::OverfullPage {
                items: 70_000,
                max_results: 100
            })
        );
        // Characters, not bytes: 2048 four-byte characters are allowed, 2049 are not.
        assert_eq!(check_token(&"\u{1F600}".repeat(2048)), Ok(()));
        assert_eq!(
            check_token(&"\u{1F600}".repeat(2049)),
            Err(PageStop::TokenTooLong(2049))
        );
        let message = PageStop::TokenTooLong(70_000).to_string();
        assert!(message.contains("70000 characters"), "{message}");
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
