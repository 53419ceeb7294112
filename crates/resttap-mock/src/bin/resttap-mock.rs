//! `resttap-mock`: the mock feedback API as a standalone server (also `resttap mock-api`).

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "Serve the mock feedback API that resttap's demo, tests and benchmarks use")]
struct Cli {
    #[command(flatten)]
    args: resttap_mock::MockArgs,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    Cli::parse().args.run().await
}
