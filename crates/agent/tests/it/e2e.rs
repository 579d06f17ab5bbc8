//! The loop end to end over `operators/` with a scripted server.

use stepforge_agent::Status;
use stepforge_agent::config::ProviderKind;

use crate::common::*;

fn groups_of(tasks: &[String]) -> Vec<String> {
    let refs = references();
    let mut g: Vec<String> = tasks.iter().map(|t| refs[t].0.clone()).collect();
    g.sort();
    g.dedup();
    g
}

#[test]
fn demonstrations_lift_the_second_set_and_replay_reproduces_the_store() {
    let server = scripted_server(0);
    let dir = TempDir::new("e2e");
    let store = dir.file("live.db");
    let s = run(config(&server.base, ProviderKind::Openai), &store);
    assert_eq!(s.status, Status::Done);
    assert_eq!(s.tasks, 26);
    let refs = references();
    let count = |groups: &[&str]| refs.values().filter(|(g, _)| groups.contains(&g.as_str())).count();
    // Iteration 0 solves exactly the tasks answered right at once.
    assert_eq!(s.iterations[0].solved as usize, count(AT_ONCE));
    assert_eq!(s.iterations[0].stratum, None);
    // The next iteration (hardest stratum as demonstrations) solves the second set.
    assert_eq!(s.iterations[1].new as usize, count(LATER));
    assert_eq!(s.iterations[1].stratum, Some(1));
    // Then every stratum is tried without a gain and the run stops; the third set never.
    let after: Vec<_> = s.iterations[2..].iter().map(|i| (i.stratum, i.new)).collect();
    assert_eq!(after, vec![(Some(1), 0), (Some(2), 0), (Some(3), 0)]);
    let mut want: Vec<&str> = AT_ONCE.iter().chain(LATER).copied().collect();
    want.sort();
    assert_eq!(groups_of(&s.solved_tasks), want);
    // The guardian repaired layernorm_scalar's missing Copy.
    assert!(s.guardian_fired > 0);
    assert!(s.solved_tasks.contains(&"norm_layernorm_scalar".to_string()));
    // Dedup: identical programs are verified once.
    assert!(s.verifications < s.samples, "{} verifications for {} samples", s.verifications, s.samples);
    assert!(s.tokens > 0 && s.cost > 0.0);

    // Replay from the transcript into a fresh store: identical content.
    let mut cfg = config("http://127.0.0.1:9/unused", ProviderKind::Replay);
    cfg.transcript = Some(format!("{store}.transcript.jsonl"));
    let replayed = dir.file("replay.db");
    let r = run(cfg, &replayed);
    assert_eq!(r.status, Status::Done);
    assert_eq!(dump(&store), dump(&replayed));
    assert_eq!((r.tokens, r.solved), (s.tokens, s.solved));
}
