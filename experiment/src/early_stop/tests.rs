use super::*;

/// Runs a, b, c learn well; `slow` lags far behind.
fn history() -> MetricHistory {
    let mut history = MetricHistory::new("accuracy");
    let curves: [(&str, [f64; 5]); 4] = [
        ("a", [0.60, 0.75, 0.85, 0.88, 0.90]),
        ("b", [0.62, 0.78, 0.86, 0.89, 0.91]),
        ("c", [0.58, 0.74, 0.83, 0.87, 0.89]),
        ("slow", [0.20, 0.25, 0.30, 0.35, 0.41]),
    ];
    for (run, values) in curves {
        for (step, value) in values.into_iter().enumerate() {
            history.record(run, step as u64 + 1, value);
        }
    }
    history
}

fn median() -> EarlyStop {
    EarlyStop::Median(MedianStopping::default())
}

#[test]
fn parses_policies() {
    assert_eq!(EarlyStop::parse("none"), Ok(EarlyStop::None));
    assert_eq!(EarlyStop::parse(" Median "), Ok(median()));
    assert_eq!(
        EarlyStop::parse("median:interval=2,delay=5"),
        Ok(EarlyStop::Median(MedianStopping {
            evaluation_interval: 2,
            delay_evaluation: 5
        }))
    );
    assert_eq!(
        EarlyStop::parse("bandit"),
        Ok(EarlyStop::Bandit(BanditPolicy::with_slack_factor(0.1)))
    );
    assert_eq!(
        EarlyStop::parse("bandit:0.2"),
        Ok(EarlyStop::Bandit(BanditPolicy::with_slack_factor(0.2)))
    );
    assert_eq!(
        EarlyStop::parse("bandit:amount=0.05"),
        Ok(EarlyStop::Bandit(BanditPolicy::with_slack_amount(0.05)))
    );
    assert_eq!(
        EarlyStop::parse("bandit:slack_factor=0.3,evaluation_interval=2,delay_evaluation=4"),
        Ok(EarlyStop::Bandit(BanditPolicy {
            slack_factor: Some(0.3),
            slack_amount: None,
            evaluation_interval: 2,
            delay_evaluation: 4
        }))
    );
}

#[test]
fn rejects_bad_policies() {
    let cases = [
        ("hyperband", "unknown early termination policy 'hyperband'; expected none, median, bandit:<slack factor> or bandit:amount=<slack amount>"),
        ("none:1", "none takes no options, found '1'"),
        ("median:patience=3", "unknown option 'patience' for median; expected interval or delay"),
        ("median:interval=0", "the evaluation interval must be at least 1"),
        ("median:delay=-1", "option 'delay' needs a whole number, found '-1'"),
        ("median:delay=1,delay=2", "option 'delay' is given twice"),
        ("bandit:factor=0.1,amount=0.2", "bandit takes a slack factor or a slack amount, not both"),
        ("bandit:-0.1", "slack factor must be a finite number of at least 0, found -0.1"),
        ("bandit:factor=x", "option 'factor' needs a number, found 'x'"),
        ("bandit:interval=2,0.1", "unknown option '0.1' for bandit; expected factor, amount, interval or delay"),
    ];
    for (input, message) in cases {
        match EarlyStop::parse(input) {
            Ok(policy) => panic!("{input} parsed as {policy:?}"),
            Err(error) => assert_eq!(error.to_string(), message, "{input}"),
        }
    }
}

#[test]
fn display_and_json_round_trip() {
    for input in [
        "none",
        "median",
        "median:interval=2,delay=5",
        "bandit:factor=0.1",
        "bandit:amount=0.05,delay=3",
    ] {
        let policy = EarlyStop::parse(input).expect("parses");
        assert_eq!(policy.to_string(), input);
        assert_eq!(EarlyStop::parse(&policy.to_string()), Ok(policy));
        let json = serde_json::to_string(&policy).expect("serializes");
        assert_eq!(
            serde_json::from_str::<EarlyStop>(&json).expect("deserializes"),
            policy
        );
    }
    assert_eq!(
        serde_json::to_string(&EarlyStop::parse("bandit:0.2").expect("parses"))
            .expect("serializes"),
        r#"{"policy":"bandit","slack_factor":0.2,"evaluation_interval":1,"delay_evaluation":0}"#
    );
    let sparse: EarlyStop = serde_json::from_str(r#"{"policy":"median"}"#).expect("defaults apply");
    assert_eq!(sparse, median());
}

#[test]
fn median_stops_a_clearly_worse_run() {
    let decision = median().should_stop(Goal::Maximize, &history(), "slow", 5);
    assert!(decision.stop);
    assert_eq!(
        decision.reason,
        "best accuracy 0.41 up to step 5 is below the median 0.796 of 3 other runs' running averages"
    );
}

#[test]
fn median_keeps_a_good_run() {
    let decision = median().should_stop(Goal::Maximize, &history(), "b", 5);
    assert!(!decision.stop, "{}", decision.reason);
    assert!(
        decision.reason.contains("is not below the median"),
        "{}",
        decision.reason
    );
    // The median of averages lags behind the best values: an average run survives too.
    assert!(
        !median()
            .should_stop(Goal::Maximize, &history(), "c", 5)
            .stop
    );
}

#[test]
fn median_for_a_minimized_metric() {
    let mut history = MetricHistory::new("loss");
    for (run, value) in [("a", 0.3), ("b", 0.35), ("c", 0.4), ("bad", 2.0)] {
        history.record(run, 1, value);
    }
    let decision = median().should_stop(Goal::Minimize, &history, "bad", 1);
    assert!(decision.stop);
    assert_eq!(
        decision.reason,
        "best loss 2 up to step 1 is above the median 0.35 of 3 other runs' running averages"
    );
    assert!(!median().should_stop(Goal::Minimize, &history, "a", 1).stop);
}

#[test]
fn median_needs_other_runs_at_the_step() {
    let mut history = MetricHistory::new("accuracy");
    history.record("alone", 1, 0.1);
    let decision = median().should_stop(Goal::Maximize, &history, "alone", 1);
    assert!(!decision.stop);
    assert!(decision.reason.contains("no other run has reached step 1"));
    // A run that has only reached step 2 is not compared at step 3.
    history.record("early", 1, 0.9);
    history.record("early", 2, 0.9);
    history.record("alone", 3, 0.1);
    assert!(
        !median()
            .should_stop(Goal::Maximize, &history, "alone", 3)
            .stop
    );
    assert!(
        median()
            .should_stop(Goal::Maximize, &history, "alone", 2)
            .stop
    );
    // One other run is enough (MEDIAN_MIN_OTHER_RUNS), and its average is the median.
    let decision = median().should_stop(Goal::Maximize, &history, "alone", 1);
    assert!(decision.stop);
    assert!(
        decision
            .reason
            .ends_with("of 1 other run's running average"),
        "{}",
        decision.reason
    );
}

#[test]
fn median_without_data_for_the_run_continues() {
    let decision = median().should_stop(Goal::Maximize, &history(), "ghost", 3);
    assert!(!decision.stop);
    assert_eq!(
        decision.reason,
        "run 'ghost' has no accuracy value up to step 3"
    );
}

#[test]
fn delay_and_interval_are_respected() {
    let policy = EarlyStop::parse("median:interval=2,delay=2").expect("parses");
    let history = history();
    let stops: Vec<bool> = (1..=5)
        .map(|step| {
            policy
                .should_stop(Goal::Maximize, &history, "slow", step)
                .stop
        })
        .collect();
    // Step 1, 2: within the delay; 3, 5: not multiples of 2; only 4 is evaluated.
    assert_eq!(stops, [false, false, false, true, false]);
    assert_eq!(
        policy
            .should_stop(Goal::Maximize, &history, "slow", 2)
            .reason,
        "step 2 is within the evaluation delay of 2 steps"
    );
    assert_eq!(
        policy
            .should_stop(Goal::Maximize, &history, "slow", 3)
            .reason,
        "step 3 is not a multiple of the evaluation interval 2"
    );

    let bandit = EarlyStop::parse("bandit:0.1,interval=2,delay=2").expect("parses");
    let stops: Vec<bool> = (1..=5)
        .map(|step| {
            bandit
                .should_stop(Goal::Maximize, &history, "slow", step)
                .stop
        })
        .collect();
    assert_eq!(stops, [false, false, false, true, false]);
}

#[test]
fn bandit_slack_math() {
    let policy = BanditPolicy::with_slack_factor(0.25);
    assert_eq!(policy.threshold(Goal::Maximize, 1.0), 0.8);
    assert_eq!(policy.threshold(Goal::Minimize, 0.4), 0.5);
    let policy = BanditPolicy::with_slack_amount(0.25);
    assert_eq!(policy.threshold(Goal::Maximize, 1.0), 0.75);
    assert_eq!(policy.threshold(Goal::Minimize, 0.5), 0.75);
}

#[test]
fn bandit_stops_outside_the_slack_only() {
    let mut history = MetricHistory::new("accuracy");
    history.record("best", 1, 0.9);
    history.record("close", 1, 0.85);
    history.record("far", 1, 0.7);
    // Bar: 0.9 / 1.1 = 0.818...
    let policy = EarlyStop::Bandit(BanditPolicy::with_slack_factor(0.1));
    assert!(!policy.should_stop(Goal::Maximize, &history, "best", 1).stop);
    assert!(
        !policy
            .should_stop(Goal::Maximize, &history, "close", 1)
            .stop
    );
    let decision = policy.should_stop(Goal::Maximize, &history, "far", 1);
    assert!(decision.stop);
    assert_eq!(
        decision.reason,
        "accuracy 0.7 at step 1 is below 0.8182, the best 0.9 loosened by slack factor 0.1"
    );
    // Bar: 0.9 - 0.1 = 0.8.
    let policy = EarlyStop::Bandit(BanditPolicy::with_slack_amount(0.1));
    assert!(
        !policy
            .should_stop(Goal::Maximize, &history, "close", 1)
            .stop
    );
    assert!(policy.should_stop(Goal::Maximize, &history, "far", 1).stop);
}

#[test]
fn bandit_minimize_and_steps_after_the_evaluated_one_are_ignored() {
    let mut history = MetricHistory::new("loss");
    history.record("a", 1, 0.5);
    history.record("b", 1, 0.8);
    // A value reported later must not count at step 1.
    history.record("c", 2, 0.1);
    let policy = EarlyStop::Bandit(BanditPolicy::with_slack_amount(0.2));
    // Bar at step 1: 0.5 + 0.2 = 0.7.
    let decision = policy.should_stop(Goal::Minimize, &history, "b", 1);
    assert!(decision.stop);
    assert_eq!(
        decision.reason,
        "loss 0.8 at step 1 is above 0.7, the best 0.5 loosened by slack amount 0.2"
    );
    assert!(!policy.should_stop(Goal::Minimize, &history, "a", 1).stop);
    // At step 2 the best is 0.1 and b's latest value (0.8, from step 1) is far behind.
    assert!(policy.should_stop(Goal::Minimize, &history, "a", 2).stop);
}

#[test]
fn none_never_stops_and_nan_is_ignored() {
    let mut history = history();
    history.record("slow", 6, f64::NAN);
    assert_eq!(history.points("slow").map(|points| points.len()), Some(5));
    let decision = EarlyStop::None.should_stop(Goal::Maximize, &history, "slow", 5);
    assert!(!decision.stop);
}
