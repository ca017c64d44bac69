//! The PostgreSQL and SQLite databases of the tests: one per test, dropped at the end.

use std::{sync::Mutex, time::Duration};

/// A database of its own for one test: a SQLite file, or a PostgreSQL database created from a
/// migrated template. Removed (dropped) when the test ends.
pub enum TestDb {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const PG_TEMPLATE_PREFIX: &str = "tollgate_test_template_";

/// The migrated template of this test process. One per process (by pid): another test run on
/// the same server (a second checkout, CI) must not drop or copy the template this one uses.
fn pg_template() -> String {
    format!("{PG_TEMPLATE_PREFIX}{}", std::process::id())
}

/// Drops the templates of test processes that are gone.
fn drop_stale_templates(admin: &mut diesel::PgConnection) {
    use diesel::{sql_types::Text, QueryableByName, RunQueryDsl};
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        datname: String,
    }
    let names: Vec<Name> = diesel::sql_query(format!(
        "SELECT datname FROM pg_database WHERE datname LIKE '{PG_TEMPLATE_PREFIX}%'"
    ))
    .load(admin)
    .unwrap_or_default();
    for Name { datname } in names {
        let pid = datname.trim_start_matches(PG_TEMPLATE_PREFIX);
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ =
                diesel::sql_query(format!("DROP DATABASE IF EXISTS {datname} WITH (FORCE)")).execute(admin);
        }
    }
}

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
        drop_stale_templates(&mut admin);
        let template = pg_template();
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {template} WITH (FORCE)"))
            .execute(&mut admin)
            .unwrap();
        diesel::sql_query(format!("CREATE DATABASE {template}"))
            .execute(&mut admin)
            .unwrap();
        let url = tollgate::store::DatabaseUrl::Postgres(
            format!("postgres://postgres@127.0.0.1:5432/{template}").into(),
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
        diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {}", pg_template()))
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
