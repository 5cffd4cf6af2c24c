//! Rate-limit counters in PostgreSQL: one row per (workspace, bucket, clock window), shared by
//! every node on the database (see `crate::limiter::postgres`).
//!
//! Counting is one autocommitted upsert that returns the new count: atomic on its own, with no
//! transaction around it to retry (CockroachDB and YugabyteDB retry a single-statement
//! implicit transaction themselves).

use super::retry;
use super::PostgresStore;
use crate::domain::ids::WorkspaceId;
use crate::domain::rate_limit::{Bucket, Window};
use crate::store::StoreError;

const COUNT: &str =
    "INSERT INTO rate_limit_counters (workspace_id, bucket, window_seconds, window_start, window_end, count) \
     VALUES ($1, $2, $3, $4, $5, 1) \
     ON CONFLICT (workspace_id, bucket, window_seconds, window_start) \
     DO UPDATE SET count = rate_limit_counters.count + 1 \
     RETURNING count";

impl PostgresStore {
    /// Counts one request of `workspace` in `bucket`'s `window`; returns the window's count,
    /// this request included.
    pub async fn count_request(
        &self,
        workspace: WorkspaceId,
        bucket: Bucket,
        window: Window,
    ) -> Result<u64, StoreError> {
        let mut reconnects = 0;
        loop {
            let client = self.client().await?;
            let counted = async {
                let statement = client.prepare_cached(COUNT).await?;
                let seconds = window.seconds as i32;
                client
                    .query_one(&statement, &[&workspace.0, &bucket.as_str(), &seconds, &window.start, &window.end()])
                    .await
            }
            .await;
            match counted {
                Ok(row) => return Ok(row.get::<_, i64>(0).max(0) as u64),
                Err(err) => {
                    // As for transactions (`PostgresStore::transaction`): a failed connection
                    // leaves the pool. Only a refusal to write is certain to have counted
                    // nothing and is run again; a lost connection may have counted.
                    if retry::is_connection_failure(&err) {
                        drop(deadpool_postgres::Object::take(client));
                    }
                    if !retry::is_read_only(&err) || reconnects == super::MAX_RECONNECTS {
                        return Err(retry::db_error(err));
                    }
                    reconnects += 1;
                }
            }
        }
    }

    /// Deletes the counters of windows that ended before `before` (epoch seconds); returns how
    /// many. Any node may run it at any time: a deleted window is never counted again.
    pub async fn forget_windows_ended_before(&self, before: i64) -> Result<u64, StoreError> {
        let client = self.client().await?;
        client
            .execute("DELETE FROM rate_limit_counters WHERE window_end < $1", &[&before])
            .await
            .map_err(retry::db_error)
    }
}
