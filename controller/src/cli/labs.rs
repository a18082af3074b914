//! `sdn up`, `sdn down` and `sdn validate`.

use crate::lab::{self, UpOptions, record::LabRecord};
use crate::topology::{self, Topology};
use anyhow::{Context, Result, bail};
use std::path::Path;
use std::time::{Duration, Instant};

pub(super) fn validate(path: &Path) -> Result<()> {
    let topology = topology::load(path)?;
    println!(
        "{}: lab {} is valid: {} network(s), {} switch(es), {} host(s), {} link(s)",
        path.display(),
        topology.name,
        topology.networks.len(),
        topology.switches.len(),
        topology.hosts.len(),
        topology.links.len()
    );
    Ok(())
}

fn print_summary(topology: &Topology, lab: &LabRecord, elapsed: Duration, verb: &str) {
    println!(
        "lab {} is {verb} in {:.1}s: {} host(s), {} switch(es), {} link(s)",
        topology.name,
        elapsed.as_secs_f64(),
        topology.hosts.len(),
        topology.switches.len(),
        topology.links.len()
    );
    for host in &topology.hosts {
        let addresses: Vec<String> = host
            .interfaces
            .iter()
            .map(|i| format!("{} {}/{} {}", i.name, i.address, i.prefix_len, i.mac))
            .collect();
        println!(
            "  host   {:<8} netns {:<16} {}",
            host.name,
            topology.namespace_of(&host.name),
            addresses.join(", ")
        );
    }
    for switch in &topology.switches {
        let ports: Vec<String> = switch
            .ports
            .iter()
            .map(|p| {
                let peer = crate::topology::peer_of(&topology.links, &switch.name, &p.name)
                    .map(|e| format!("{}:{}", e.node, e.device))
                    .unwrap_or_default();
                format!("{}({})→{}", p.name, p.number, peer)
            })
            .collect();
        println!(
            "  switch {:<8} netns {:<16} {}",
            switch.name,
            topology.namespace_of(&switch.name),
            ports.join(" ")
        );
    }
    println!(
        "  controller {}; logs in {}",
        lab.controller,
        lab.dir().display()
    );
    if let Some(((from, _), (_, address))) =
        super::demo::reachable_pairs(topology).into_iter().next()
    {
        println!(
            "try: sudo ip netns exec {} ping -c 3 {address}",
            topology.namespace_of(&from)
        );
    }
}

pub(super) async fn up(path: &Path, resume: bool, timeout: Duration) -> Result<()> {
    let topology = topology::load(path)?;
    let started = Instant::now();
    let lab = lab::up(&topology, &UpOptions { resume, timeout }).await?;
    print_summary(
        &topology,
        &lab,
        started.elapsed(),
        if resume { "resumed" } else { "up" },
    );
    Ok(())
}

pub(super) fn down(path: Option<&Path>, name: Option<&str>, force: bool) -> Result<()> {
    lab::require_root("sdn down")?;
    let (name, topology) = match (path, name) {
        (Some(path), _) => {
            let topology = topology::load(path)?;
            (topology.name.clone(), Some(topology))
        }
        (None, Some(name)) => (name.to_string(), None),
        (None, None) => bail!("say which lab: `sdn down FILE` or `sdn down --lab NAME`"),
    };
    let Some(record) = LabRecord::load(&name).context("read the lab record")? else {
        let leftovers: Vec<String> = match &topology {
            Some(t) => t
                .namespaces()
                .into_iter()
                .filter(|n| lab::netns::exists(n))
                .collect(),
            None => lab::netns::list_with_prefix(&format!("{name}-")),
        };
        if leftovers.is_empty() {
            println!("lab {name} is not up: nothing to remove");
            return Ok(());
        }
        match (&topology, force) {
            (Some(topology), true) => {
                let report = lab::force_remove(topology);
                println!(
                    "lab {name}: deleted {} namespace(s) without a record",
                    report.namespaces
                );
                return Ok(());
            }
            _ => bail!(
                "there is no record of lab {name}, but namespaces {} exist; \
                 `sdn down --force FILE` deletes the namespaces the topology names",
                leftovers.join(", ")
            ),
        }
    };
    let report = lab::teardown(&record);
    if !report.leftovers.is_empty() {
        bail!(
            "lab {name}: could not remove {}",
            report.leftovers.join(", ")
        );
    }
    let extra = if report.killed > 0 {
        format!(
            ", killed {} process(es) left in its namespaces",
            report.killed
        )
    } else {
        String::new()
    };
    println!(
        "lab {name} is down: stopped {} process(es), deleted {} namespace(s){extra}",
        report.stopped, report.namespaces
    );
    Ok(())
}
