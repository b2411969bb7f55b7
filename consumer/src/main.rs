//! pay-consumer: the ledger consumer (issue 3). A stub until then, so the workspace has its final shape.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("pay-consumer is not implemented yet")
}
