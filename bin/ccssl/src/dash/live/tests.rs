use std::time::Duration;

use ccssl_pipe::metrics::StageState as PipeState;
use ccssl_pipe::ring::{self, RingConfig};
use ccssl_pipe::shm::{self, new_run_id, segment_path};

use super::*;

/// Real segments of a two-stage run (`loader` with 2 replicas, `step`), with the layout
/// written to a fresh run directory; removed on drop.
struct Fixture {
    run_id: String,
    dir: PathBuf,
}

impl Fixture {
    fn new(label: &str) -> Fixture {
        let run_id = new_run_id();
        let dir = std::env::temp_dir().join(format!("ccssl-live-{label}-{run_id}"));
        fs::create_dir_all(&dir).unwrap();
        let loader = segment_path(&run_id, "metrics-loader");
        let step = segment_path(&run_id, "metrics-step");
        metrics::create(&loader, 2).unwrap();
        metrics::create(&step, 1).unwrap();
        let mut rings = Vec::new();
        for p in 0..2 {
            let name = format!("loader.{p}-step.0");
            let path = segment_path(&run_id, &name);
            let config = RingConfig {
                slot_size: 64,
                slot_count: 4,
            };
            ring::create(&path, config).unwrap();
            rings.push(LayoutRing {
                name,
                from: "loader".into(),
                to: "step".into(),
                path,
            });
        }
        let layout = RunLayout {
            run_id: run_id.clone(),
            run_name: "live-test".into(),
            graph_file: "graphs/live.ron".into(),
            start_ns: 1_000,
            stages: vec![
                LayoutStage {
                    name: "loader".into(),
                    kind: "loader".into(),
                    replicas: 2,
                    metrics: loader,
                },
                LayoutStage {
                    name: "step".into(),
                    kind: "step".into(),
                    replicas: 1,
                    metrics: step,
                },
            ],
            rings,
        };
        layout.write(&dir).unwrap();
        Fixture { run_id, dir }
    }

    fn block(&self, stage: &str) -> MetricsBlock {
        MetricsBlock::open(segment_path(&self.run_id, &format!("metrics-{stage}"))).unwrap()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = shm::remove_run_segments(&self.run_id);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn layout_round_trips_through_run_dir() {
    let fixture = Fixture::new("layout");
    let layout = RunLayout::read(&fixture.dir).unwrap();
    assert_eq!(layout.run_id, fixture.run_id);
    assert_eq!(layout.stages.len(), 2);
    assert_eq!(layout.rings[1].name, "loader.1-step.0");
}

#[test]
fn sample_reads_stage_counters_and_rings() {
    let fixture = Fixture::new("counters");
    let loader = fixture.block("loader");
    let record = loader.replica(1).unwrap();
    record.set_state(PipeState::Running);
    record.set_pid(4321);
    record.heartbeat();
    record.add_items_out(7);
    record.add_images_out(7 * 64);
    record.add_busy(Duration::from_millis(5));
    record.add_blocked_out(Duration::from_millis(3));
    record.add_restart();

    let mut source = LiveSource::open(&fixture.dir, RunEnd::Flag(Arc::default())).unwrap();
    let sample = source.sample().unwrap();

    assert_eq!(sample.run.run_name, "live-test");
    assert_eq!(sample.run.start_ns, 1_000);
    assert!(
        sample.time_ns > 1_700_000_000_000_000_000,
        "{}",
        sample.time_ns
    );
    assert_eq!(sample.stages.len(), 3, "two loader replicas and one step");
    let first = &sample.stages[0];
    assert_eq!((first.name.as_str(), first.replica), ("loader", 0));
    assert_eq!(first.state, StageState::Starting);
    assert_eq!(first.pid, None);
    let second = &sample.stages[1];
    assert_eq!((second.replica, second.replicas), (1, 2));
    assert_eq!(second.state, StageState::Running);
    assert_eq!(second.pid, Some(4321));
    assert_eq!((second.items_out, second.images_out), (7, 448));
    assert_eq!(second.busy_ns, 5_000_000);
    assert_eq!(second.blocked_out_ns, 3_000_000);
    assert_eq!(second.restarts, 1);
    assert_eq!(sample.edges.len(), 2);
    assert_eq!(sample.edges[0].slot_count, 4);
    assert_eq!(sample.edges[0].from, "loader");
    assert!(sample.train.is_none());
    assert_eq!(sample.run.total_steps, 0);
}

#[test]
fn progress_comes_from_gauges() {
    let fixture = Fixture::new("gauges");
    let step = fixture.block("step");
    let record = step.replica(0).unwrap();
    record.set_gauge(gauge::STEP, 120.0);
    record.set_gauge(gauge::TOTAL_STEPS, 10_000.0);
    record.set_gauge(gauge::LR, 0.0299);
    record.set_gauge(gauge::LOSS, 2.0);
    record.set_gauge(gauge::LOSS_X, 0.25);
    record.set_gauge(gauge::LOSS_U, 0.5);
    record.set_gauge(gauge::LOSS_C, 1.25);
    record.set_gauge(gauge::MASK_RATIO, 0.75);
    record.set_gauge(gauge::PSEUDO_LABEL_ACC, 0.9);

    let mut source = LiveSource::open(&fixture.dir, RunEnd::Flag(Arc::default())).unwrap();
    let sample = source.sample().unwrap();
    assert_eq!((sample.run.step, sample.run.total_steps), (120, 10_000));
    assert_eq!(sample.run.lr, 0.0299);
    let train = sample.train.expect("train gauges");
    assert_eq!(train.loss, 2.0);
    assert_eq!(train.loss_x, 0.25);
    assert_eq!(train.loss_u, 0.5);
    assert_eq!(train.loss_c, 1.25);
    assert_eq!(train.mask_ratio, 0.75);
    assert_eq!(train.pseudo_label_acc, 0.9);
}

#[test]
fn evals_are_read_as_lines_complete() {
    let fixture = Fixture::new("evals");
    let path = fixture.dir.join("metrics.jsonl");
    let eval = r#"{"kind":"eval","step":1024,"top1_ema":41.5,"top5_ema":88.0,"loss_ema":1.7,"top1_raw":39.5,"top5_raw":87.0,"loss_raw":1.8,"images":10000}"#;
    let later = eval.replace("1024", "2048");
    fs::write(&path, format!("{eval}\n{}", &later[..40])).unwrap();

    let mut source = LiveSource::open(&fixture.dir, RunEnd::Flag(Arc::default())).unwrap();
    let first = source.sample().unwrap();
    assert_eq!(first.evals.len(), 1, "the unfinished line waits");
    assert_eq!(first.evals[0].step, 1024);
    assert_eq!(first.evals[0].top1_ema, 41.5);
    assert_eq!(first.evals[0].top1_raw, 39.5);

    let rest = &later[40..];
    let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
    std::io::Write::write_all(&mut file, format!("{rest}\n").as_bytes()).unwrap();
    let second = source.sample().unwrap();
    assert_eq!(second.evals.len(), 2);
    assert_eq!(second.evals[1].step, 2048);
}

#[test]
fn end_flag_ends_samples() {
    let fixture = Fixture::new("flag");
    let flag = Arc::new(AtomicBool::new(false));
    let mut source = LiveSource::open(&fixture.dir, RunEnd::Flag(Arc::clone(&flag))).unwrap();
    assert!(source.sample().is_ok());
    flag.store(true, Ordering::Release);
    assert!(matches!(source.sample(), Err(SourceError::Ended)));
}

#[test]
fn end_record_ends_attached_samples() {
    let fixture = Fixture::new("end");
    let own_pid = std::process::id();
    let mut source = LiveSource::open(&fixture.dir, RunEnd::Supervisor(own_pid)).unwrap();
    assert!(
        source.sample().is_ok(),
        "a live supervisor without end record"
    );
    let end = r#"{"kind":"end","step":0,"total_steps":0,"status":"completed","time_ns":5}"#;
    fs::write(fixture.dir.join("metrics.jsonl"), format!("{end}\n")).unwrap();
    assert!(matches!(source.sample(), Err(SourceError::Ended)));
}

#[test]
fn dead_supervisor_ends_attached_samples() {
    let fixture = Fixture::new("dead");
    // Pid numbers are capped far below this on Linux (pid_max is at most 2^22).
    let mut source = LiveSource::open(&fixture.dir, RunEnd::Supervisor(u32::MAX - 1)).unwrap();
    assert!(matches!(source.sample(), Err(SourceError::Ended)));
}

#[test]
fn removed_segments_fail_open() {
    let fixture = Fixture::new("gone");
    shm::remove_run_segments(&fixture.run_id).unwrap();
    let err = LiveSource::open(&fixture.dir, RunEnd::Flag(Arc::default()))
        .err()
        .expect("segments are gone");
    assert!(err.to_string().contains("metrics-loader"), "{err}");
}

#[test]
fn missing_layout_names_file() {
    let dir = std::env::temp_dir().join(format!("ccssl-live-none-{}", new_run_id()));
    let err = LiveSource::open(&dir, RunEnd::Flag(Arc::default()))
        .err()
        .expect("no layout");
    assert!(err.to_string().contains("layout.json"), "{err}");
}
