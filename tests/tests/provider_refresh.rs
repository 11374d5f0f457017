//! What a refresh costs in EC2 calls, counted by the proxy in front of moto:
//! a plan of several `launch_service` resources lists the instances the
//! provider manages once instead of describing each, a plan without refresh
//! calls nothing, and the shared listing never hides a change: an instance
//! whose managed-by tag was removed is still found (and its tag planned back),
//! one terminated behind Terraform's back is planned again.

use launch_e2e::fault_proxy::FaultProxy;
use launch_e2e::moto::Moto;
use launch_e2e::terraform::{self, Workspace};
use launch_e2e::{Server, unique};

const SERVICES: usize = 5;

#[test]
fn a_plan_of_many_services_lists_their_instances_in_one_call_and_still_sees_changes() {
    let server = Server::start();
    let moto = Moto::start();
    let ec2 = moto.peer();
    let proxy = FaultProxy::start(moto.port);
    let tf = Workspace::new(
        &terraform::newest(),
        &server.url(),
        &server.admin_token,
        &proxy.url(),
    );
    let name = unique::service_name();
    tf.write(&format!(
        "resource \"launch_service\" \"svc\" {{\n  count          = {SERVICES}\n  name           = \"{name}-${{count.index}}\"\n  target         = \"aws\"\n  wait_for_agent = false\n}}\n"
    ));
    tf.apply().success();
    let instance = |n: usize| {
        let live = ec2.live_instances(&format!("{name}-{n}"), "prod");
        assert_eq!(live.len(), 1, "service {n}: {live:?}");
        live[0].id.clone()
    };

    // One read at a time, so reads cannot merely happen to arrive together.
    let serial_plan = || {
        tf.run(&[
            "plan",
            "-parallelism=1",
            "-detailed-exitcode",
            "-no-color",
            "-input=false",
        ])
    };
    proxy.reset_calls();
    let plan = serial_plan();
    assert_eq!(plan.code, 0, "{}", plan.text());
    assert_eq!(
        proxy.calls("DescribeInstances"),
        1,
        "a refresh of {SERVICES} services lists them in one call"
    );

    proxy.reset_calls();
    let plan = tf.run(&[
        "plan",
        "-refresh=false",
        "-detailed-exitcode",
        "-no-color",
        "-input=false",
    ]);
    assert_eq!(plan.code, 0, "{}", plan.text());
    assert_eq!(proxy.calls("DescribeInstances"), 0, "no refresh, no read");

    // Missing from the listing: described directly, not taken for gone.
    ec2.delete_tag(&instance(0), "launch:managed-by");
    proxy.reset_calls();
    let plan = serial_plan();
    let text = plan.text();
    assert_eq!(plan.code, 2, "{text}");
    assert!(
        text.contains("launch_service.svc[0] will be updated in-place")
            && text.contains("\"launch:managed-by\"")
            && text.contains("0 to add, 1 to change, 0 to destroy"),
        "the untagged instance is read and its tag planned back:\n{text}"
    );
    assert_eq!(
        proxy.calls("DescribeInstances"),
        2,
        "the listing, then the one instance it lacks"
    );
    tf.apply().success();

    // Terminated behind Terraform's back: the listing says so.
    ec2.terminate(&instance(1));
    let plan = tf.plan();
    let text = plan.text();
    assert_eq!(plan.code, 2, "{text}");
    assert!(
        text.contains("launch_service.svc[1] will be created")
            && text.contains("1 to add, 0 to change, 0 to destroy"),
        "the terminated instance is planned again:\n{text}"
    );

    tf.destroy().success();
    for n in 0..SERVICES {
        assert!(
            ec2.live_instances(&format!("{name}-{n}"), "prod")
                .is_empty()
        );
    }
}
