//! The endpoints the source reads, as `Client` methods (a child module of `client.rs`: it
//! uses the client's own fields): the archive list, the entity, the messages, the agent's
//! chats and topics.

use crate::superoffice::client::*;

impl Client {
    /// The archive rows that may have changed since `since` (archive mode), by id, each with the
    /// fingerprint of its columns: chats requested since then (to the second) and chats
    /// updated on `since`'s UTC date or later (the archive's `updatedDate` is a date column).
    pub(in crate::superoffice) async fn list_candidates(
        &self,
        since: DateTime<Utc>,
    ) -> Result<BTreeMap<i64, String>, SourceError> {
        // Never write a date SuperOffice reads as "not set" into the filter (a `start` before
        // 1900 would be one): from 1900 on is everything.
        let first: DateTime<Utc> = lenient::FIRST_REAL_DATE.parse().expect("constant");
        let since = since.max(first);
        let new = format!(
            "whenRequested afterTime '{}'",
            filter_time(since, self.settings.timezone)
        );
        let day_before = (since - TimeDelta::days(1)).format("%Y-%m-%d");
        let changed = format!("updatedDate after '{day_before}'");
        let mut rows = self.list_rows(&new, None).await?;
        rows.extend(self.list_rows(&changed, None).await?);
        Ok(rows)
    }

    /// Every archive row that `filter` selects, by id with its fingerprint, paged by keyset
    /// (at most `limit` rows when given: one page).
    pub(in crate::superoffice) async fn list_rows(
        &self,
        filter: &str,
        limit: Option<usize>,
    ) -> Result<BTreeMap<i64, String>, SourceError> {
        Ok(self
            .archive_rows(filter, LIST_COLUMNS, limit)
            .await?
            .into_iter()
            .map(|(id, row)| (id, row_fingerprint(&row)))
            .collect())
    }

    /// Every archive row that `filter` selects, with the columns `select`, by id, paged by
    /// keyset (`chatSessionId gt LAST`, or the server's `odata.nextLink`); at most `limit` rows
    /// when given (one page).
    pub(in crate::superoffice) async fn archive_rows(
        &self,
        filter: &str,
        select: &str,
        limit: Option<usize>,
    ) -> Result<BTreeMap<i64, Value>, SourceError> {
        let top = limit.unwrap_or(self.settings.page_size);
        let mut rows = BTreeMap::new();
        let mut last: Option<i64> = None;
        let mut next: Option<String> = None;
        for _page in 0..1_000_000 {
            let url = match next.take() {
                Some(u) => u,
                None => {
                    let mut f = filter.to_string();
                    if let Some(l) = last {
                        f.push_str(&format!(" and chatSessionId gt {l}"));
                    }
                    let mut u = reqwest::Url::parse("http://tenant.invalid/").expect("constant");
                    u.query_pairs_mut()
                        .append_pair("$select", select)
                        .append_pair("$filter", &f)
                        .append_pair("$orderBy", "chatSessionId")
                        .append_pair("$top", &top.to_string());
                    format!("{LIST_PATH}?{}", u.query().unwrap_or_default())
                }
            };
            let body = self
                .get_json(LIST_PATH, &url)
                .await?
                .ok_or_else(|| self.body_error(LIST_PATH, "the archive answered 404".into()))?;
            let (items, next_link) = list_page(&body).map_err(|d| self.body_error(LIST_PATH, d))?;
            let before = rows.len();
            let n = items.len();
            for item in items {
                match item_id(&item) {
                    Some(id) => {
                        last = Some(last.map_or(id, |l| l.max(id)));
                        rows.insert(id, item);
                    }
                    None => {
                        return Err(self.body_error(
                            LIST_PATH,
                            format!("a row without chatSessionId: {}", lenient::short(&item)),
                        ));
                    }
                }
            }
            if limit.is_some() {
                break;
            }
            let progressed = rows.len() > before;
            if let Some(link) = next_link.filter(|_| progressed) {
                next = Some(self.next_link(&link)?);
                continue;
            }
            if n < top || !progressed {
                break;
            }
        }
        Ok(rows)
    }

    /// An `odata.nextLink` as a path and query under the tenant's root, where it is sent (the
    /// root in use then: a tenant that moved meanwhile is followed). On-site, a link to another
    /// host is refused.
    pub(in crate::superoffice) fn next_link(&self, link: &str) -> Result<String, SourceError> {
        let on_site = match &self.tenant {
            Tenant::OnSite { base_url, .. } => Some(base_url),
            Tenant::Online(_) => None,
        };
        let base = on_site
            .cloned()
            .unwrap_or_else(|| reqwest::Url::parse("https://tenant.invalid/").expect("constant"));
        let url = base.join(link).map_err(|e| {
            self.body_error(LIST_PATH, format!("odata.nextLink is not a URL ({e})"))
        })?;
        if on_site.is_some() && url.origin() != base.origin() {
            return Err(self.body_error(
                LIST_PATH,
                format!(
                    "odata.nextLink points to another host ({}); not followed",
                    url.host_str().unwrap_or("?")
                ),
            ));
        }
        let path = url.path();
        let at = path.find("/api/").ok_or_else(|| {
            self.body_error(LIST_PATH, "odata.nextLink is not under /api/".into())
        })?;
        Ok(match url.query() {
            Some(q) => format!("{}?{q}", &path[at..]),
            None => path[at..].to_string(),
        })
    }

    pub(in crate::superoffice) async fn entities_for_user(
        &self,
    ) -> Result<Vec<Value>, SourceError> {
        let r = self
            .send_json(
                FOR_USER_PATH,
                reqwest::Method::POST,
                FOR_USER_PATH,
                "{}".into(),
            )
            .await?;
        let body = parse_json(&r.body).map_err(|d| self.body_error(FOR_USER_PATH, d))?;
        list_page(&body)
            .map(|(items, _)| items)
            .map_err(|d| self.body_error(FOR_USER_PATH, d))
    }

    /// The chat topics (`ChatTopicsForUser`).
    pub(in crate::superoffice) async fn topics(&self) -> Result<Vec<Value>, SourceError> {
        let r = self
            .send_json(TOPICS_PATH, reqwest::Method::POST, TOPICS_PATH, "{}".into())
            .await?;
        let body = parse_json(&r.body).map_err(|d| self.body_error(TOPICS_PATH, d))?;
        list_page(&body)
            .map(|(items, _)| items)
            .map_err(|d| self.body_error(TOPICS_PATH, d))
    }

    pub(in crate::superoffice) async fn messages(
        &self,
        id: i32,
        after: i64,
    ) -> Result<Vec<Value>, SourceError> {
        let rel = format!("{LIST_PATH}/{id}/Messages?after={after}");
        match self.get_json(MESSAGES_PATH, &rel).await? {
            None => Ok(Vec::new()),
            Some(v) => list_page(&v)
                .map(|(items, _)| items)
                .map_err(|d| self.body_error(MESSAGES_PATH, d)),
        }
    }
}
