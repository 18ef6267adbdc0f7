//! `dr demo`: a first run with nothing configured. Starts a sandbox PostgreSQL (and Redis
//! when installed), loads a small shop, writes a temporary dr.toml, runs the real commands
//! and removes everything it started.

use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::pg::ConnTarget;
use crate::sandbox::SandboxCluster;

const SHOP_SQL: &str = r#"
CREATE SCHEMA shop;
CREATE TABLE shop.customers (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, email text UNIQUE NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE shop.products (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, sku text UNIQUE NOT NULL, title text NOT NULL, price_cents integer NOT NULL CHECK (price_cents > 0), attributes jsonb NOT NULL DEFAULT '{}');
CREATE TABLE shop.orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer_id bigint NOT NULL REFERENCES shop.customers(id), status text NOT NULL, ordered_at timestamptz NOT NULL);
CREATE TABLE shop.order_items (order_id bigint NOT NULL REFERENCES shop.orders(id), product_id bigint NOT NULL REFERENCES shop.products(id), quantity integer NOT NULL, PRIMARY KEY (order_id, product_id));
INSERT INTO shop.customers (name, email) SELECT 'Customer ' || i, 'customer' || i || '@example.test' FROM generate_series(1, 1000) i;
INSERT INTO shop.products (sku, title, price_cents, attributes) SELECT 'SKU-' || i, 'Product ' || i, 100 + (i * 37) % 9000, jsonb_build_object('color', (ARRAY['red','green','blue'])[1 + i % 3], 'weight_g', i * 3) FROM generate_series(1, 200) i;
INSERT INTO shop.orders (customer_id, status, ordered_at) SELECT 1 + (i * 7) % 1000, (ARRAY['paid','shipped','delivered'])[1 + i % 3], now() - (i || ' minutes')::interval FROM generate_series(1, 3000) i;
INSERT INTO shop.order_items (order_id, product_id, quantity) SELECT o, 1 + (o * k * 13) % 200, 1 + k FROM generate_series(1, 3000) o, generate_series(1, 2) k ON CONFLICT DO NOTHING;
CREATE VIEW shop.revenue AS SELECT date_trunc('day', o.ordered_at) AS day, sum(p.price_cents * i.quantity) AS cents FROM shop.orders o JOIN shop.order_items i ON i.order_id = o.id JOIN shop.products p ON p.id = i.product_id GROUP BY 1;
"#;

pub async fn run(keep: bool) -> Result<i32> {
    let work = tempfile::Builder::new()
        .prefix("dr-demo-")
        .tempdir()
        .context("cannot create the demo directory")?;
    say("starting a throwaway PostgreSQL cluster");
    let cluster = tokio::task::spawn_blocking(|| SandboxCluster::start(None)).await??;
    let admin = ConnTarget::parse(&cluster.url)?;
    admin
        .connect()
        .await?
        .batch_execute("CREATE DATABASE shop")
        .await?;
    let shop = admin.with_database("shop")?;
    say("loading a sample shop: customers, products, orders, order items (with foreign keys)");
    shop.connect()
        .await?
        .batch_execute(SHOP_SQL)
        .await
        .context("cannot load the sample shop")?;
    let redis = match RedisSandbox::start(work.path()) {
        Ok(r) => r,
        Err(e) => {
            say(&format!("no Redis in this demo ({e:#})"));
            None
        }
    };

    let config_path = work.path().join("dr.toml");
    let storage_dir = work.path().join("backups");
    let redis_table = redis
        .as_ref()
        .map(|r| {
            format!(
                "\n[[redis]]\nname = \"cache\"\nurl = \"redis://127.0.0.1:{}\"\n",
                r.port
            )
        })
        .unwrap_or_default();
    let config = format!(
        r#"# Written by `dr demo`; the password comes from the environment (url_env), never this file.
[objectives]
rpo = "1h"
rto = "5m"

[storage]
url = "file://{}"

[retention]
keep_last = 3

[[postgres]]
name = "shop"
url_env = "DR_DEMO_DATABASE_URL"
{redis_table}
[[contacts]]
name = "Demo On-Call"
role = "primary on-call"
phone = "+1-555-0100"
hours = "24/7"

[[verify.sql]]
name = "every order has a customer"
query = "SELECT count(*) FROM shop.orders o LEFT JOIN shop.customers c ON c.id = o.customer_id WHERE c.id IS NULL"
expect = "= 0"
"#,
        storage_dir.display()
    );
    std::fs::write(&config_path, config)?;
    let exe = std::env::current_exe()?;
    let mut failed = Vec::new();
    // The first check runs before any backup exists: NOT READY there is the point.
    for (i, step) in [
        &["check"][..],
        &["backup"],
        &["list"],
        &["drill"],
        &["check", "--only", "backup", "--only", "drill"],
        &["runbook", "show", "database-failure"],
    ]
    .into_iter()
    .enumerate()
    {
        println!("\n$ dr {}", step.join(" "));
        let status = tokio::process::Command::new(&exe)
            .arg("--config")
            .arg(&config_path)
            .args(step)
            .env("DR_DEMO_DATABASE_URL", shop_url(&cluster.url))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await?;
        if !status.success() && i > 0 {
            failed.push(step.join(" "));
        }
    }
    if keep {
        // The sandbox password goes to a 0600 file, not to the terminal.
        let env_file = work.path().join("env");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&env_file)?;
            writeln!(
                f,
                "export DR_DEMO_DATABASE_URL='{}'",
                shop_url(&cluster.url)
            )?;
        }
        println!(
            "\nThe sandbox keeps running; try for instance:\n  . {} && {} --config {} restore --backup-id latest --yes\nPress Ctrl-C to stop and remove everything.",
            env_file.display(),
            exe.display(),
            config_path.display()
        );
        tokio::signal::ctrl_c().await.ok();
    }
    println!(
        "\nDemo finished. Next: copy dr.toml.example to dr.toml, point it at your database, then run `dr check`, `dr backup` and `dr drill`."
    );
    drop(redis);
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .ok();
    drop(work);
    if failed.is_empty() {
        Ok(0)
    } else {
        bail!("demo step(s) failed: {}", failed.join(", "))
    }
}

fn shop_url(cluster_url: &str) -> String {
    cluster_url.replace("/postgres", "/shop")
}

fn say(text: &str) {
    eprintln!("demo: {text}");
}

/// A throwaway redis-server, when one is installed; stopped on drop.
struct RedisSandbox {
    child: std::process::Child,
    port: u16,
}

impl RedisSandbox {
    fn start(dir: &Path) -> Result<Option<RedisSandbox>> {
        let Ok(exe) = crate::pg::tools::find("redis-server", None) else {
            say("redis-server is not installed: the demo runs without Redis");
            return Ok(None);
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = std::process::Command::new(exe)
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let sandbox = RedisSandbox { child, port };
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(Some(sandbox));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        bail!("redis-server did not start on port {port}")
    }
}

impl Drop for RedisSandbox {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
