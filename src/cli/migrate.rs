//! `consentry migrate`: brings a PostgreSQL database's schema up to date and exits, for
//! deployments that migrate before they roll out new servers.

use crate::store::{DatabaseLocation, PostgresOptions};

/// Applies the pending migrations of the PostgreSQL store at `database`.
pub fn run(database: &DatabaseLocation) -> anyhow::Result<()> {
    match database {
        DatabaseLocation::Postgres(url) => {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let applied = runtime.block_on(crate::store::postgres::migrate(url, &PostgresOptions::default()))?;
            if applied.is_empty() {
                println!("{database}: the schema is up to date");
            } else {
                let versions: Vec<String> = applied.iter().map(i32::to_string).collect();
                println!("{database}: applied migrations {}", versions.join(", "));
            }
            Ok(())
        }
        DatabaseLocation::Embedded(_) => {
            anyhow::bail!("migrate applies to a PostgreSQL database (--database postgres://…); the embedded store needs no migrations")
        }
    }
}
