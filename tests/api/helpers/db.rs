//! The PostgreSQL and SQLite databases of the tests: one per test, dropped at the end.

use std::{sync::Mutex, time::Duration};

/// A database of its own for one test: a SQLite file, or a PostgreSQL database created from a
/// migrated template. Removed (dropped) when the test ends.
pub enum TestDb {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PG_TEMPLATE: &str = "tollgate_test_template";

fn pg_admin() -> diesel::PgConnection {
    use diesel::Connection;
    diesel::PgConnection::establish(PG_ADMIN_URL)
        .unwrap_or_else(|e| panic!("PostgreSQL must run on 127.0.0.1:5432 for these tests: {e}"))
}

/// Creates the migrated template once per test process; serialises `CREATE DATABASE`, which
/// refuses a template that another `CREATE DATABASE` is copying.
fn pg_template_lock() -> std::sync::MutexGuard<'static, ()> {
    use diesel::RunQueryDsl;
    static TEMPLATE: std::sync::OnceLock<Mutex<()>> = std::sync::OnceLock::new();
    let lock = TEMPLATE.get_or_init(|| {
        let mut admin = pg_admin();
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {PG_TEMPLATE} WITH (FORCE)"))
            .execute(&mut admin)
            .unwrap();
        diesel::sql_query(format!("CREATE DATABASE {PG_TEMPLATE}"))
            .execute(&mut admin)
            .unwrap();
        let url = tollgate::store::DatabaseUrl::Postgres(
            format!("postgres://postgres@127.0.0.1:5432/{PG_TEMPLATE}").into(),
        );
        // Runs the migrations; the pool is dropped so that no session holds the template.
        drop(
            tollgate::store::connect_with_retry(&url, Duration::from_secs(5), Duration::from_secs(5))
                .unwrap(),
        );
        Mutex::new(())
    });
    lock.lock().unwrap_or_else(|p| p.into_inner())
}

impl TestDb {
    pub fn sqlite() -> TestDb {
        TestDb::Sqlite(
            std::env::temp_dir().join(format!("tollgate-test-{}.db", uuid::Uuid::new_v4().simple())),
        )
    }

    pub fn postgres() -> TestDb {
        use diesel::RunQueryDsl;
        let name = format!("tollgate_test_{}", uuid::Uuid::new_v4().simple());
        let _guard = pg_template_lock();
        diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {PG_TEMPLATE}"))
            .execute(&mut pg_admin())
            .unwrap();
        TestDb::Postgres(name)
    }

    /// `DATABASE_URL` for the gateway.
    pub fn url(&self) -> String {
        self.url_via(5432)
    }

    /// The URL through a relay on `port` (PostgreSQL only).
    pub fn url_via(&self, port: u16) -> String {
        match self {
            TestDb::Sqlite(path) => format!("sqlite://{}", path.display()),
            TestDb::Postgres(name) => format!("postgres://postgres@127.0.0.1:{port}/{name}"),
        }
    }

    /// A direct connection, to check what is stored.
    pub fn connect(&self) -> tollgate::store::DbConnection {
        use diesel::Connection;
        use tollgate::store::DbConnection;
        match self {
            TestDb::Sqlite(path) => DbConnection::Sqlite(
                diesel::SqliteConnection::establish(&path.display().to_string()).unwrap(),
            ),
            TestDb::Postgres(_) => DbConnection::Pg(diesel::PgConnection::establish(&self.url()).unwrap()),
        }
    }

    /// The stored row of client `id`.
    pub fn client_row(&self, id: &str) -> Option<tollgate::store::ClientRow> {
        use diesel::prelude::*;
        use tollgate::store::{schema::clients, ClientRow};
        clients::table
            .find(id)
            .select(ClientRow::as_select())
            .first(&mut self.connect())
            .optional()
            .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match self {
            TestDb::Sqlite(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            TestDb::Postgres(name) => {
                use diesel::RunQueryDsl;
                let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut pg_admin());
            }
        }
    }
}

/// Runs a test body once against SQLite and once against PostgreSQL.
#[macro_export]
macro_rules! both_databases {
    ($name:ident) => {
        mod $name {
            #[actix_web::test]
            async fn sqlite() {
                super::$name($crate::helpers::TestDb::sqlite()).await
            }
            #[actix_web::test]
            async fn postgres() {
                super::$name($crate::helpers::TestDb::postgres()).await
            }
        }
    };
}
