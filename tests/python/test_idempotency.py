"""clientToken idempotency: a retry with the same token and parameters answers the first
response without running the operation again; the same token with other parameters is refused;
simultaneous retries still create one resource."""

from __future__ import annotations

import threading
import time
import uuid

from kiln_testlib import (
    REGION,
    assert_client_error,
    create_infra,
    make_client,
    unique_name,
)


def strip_metadata(response: dict) -> dict:
    """The response without what is new on every call (the request id)."""
    response = dict(response)
    response.pop("ResponseMetadata", None)
    response.pop("requestId", None)
    return response


def count_named(client, name: str) -> int:
    response = client.list_infrastructure_configurations(
        filters=[{"name": "name", "values": [name]}]
    )
    return len(response["infrastructureConfigurationSummaryList"])


def test_same_token_same_parameters_answers_the_first_response(client, name):
    token = str(uuid.uuid4())
    first = client.create_infrastructure_configuration(
        name=name, instanceProfileName="p", clientToken=token
    )
    second = client.create_infrastructure_configuration(
        name=name, instanceProfileName="p", clientToken=token
    )
    # Without idempotency the second create would fail with ResourceAlreadyExistsException.
    assert strip_metadata(second) == strip_metadata(first)
    assert second["clientToken"] == token
    assert count_named(client, name) == 1


def test_replay_does_not_run_the_operation_again(client, name):
    arn = create_infra(client, name)
    token = str(uuid.uuid4())
    client.update_infrastructure_configuration(
        infrastructureConfigurationArn=arn,
        instanceProfileName="p",
        description="first",
        clientToken=token,
    )
    first_updated = client.get_infrastructure_configuration(infrastructureConfigurationArn=arn)[
        "infrastructureConfiguration"
    ]["dateUpdated"]
    time.sleep(0.05)  # so that a second run would leave another timestamp
    client.update_infrastructure_configuration(
        infrastructureConfigurationArn=arn,
        instanceProfileName="p",
        description="first",
        clientToken=token,
    )
    again = client.get_infrastructure_configuration(infrastructureConfigurationArn=arn)[
        "infrastructureConfiguration"
    ]
    assert again["dateUpdated"] == first_updated


def test_same_token_different_parameters_is_a_mismatch(client, name):
    token = str(uuid.uuid4())
    client.create_infrastructure_configuration(
        name=name, instanceProfileName="p", clientToken=token
    )
    with_other_description = lambda: client.create_infrastructure_configuration(  # noqa: E731
        name=name, instanceProfileName="p", description="different", clientToken=token
    )
    exc = assert_client_error(
        with_other_description, "IdempotentParameterMismatchException", token
    )
    assert isinstance(exc, client.exceptions.IdempotentParameterMismatchException)
    assert count_named(client, name) == 1


def test_tokens_are_per_operation(client, name):
    token = str(uuid.uuid4())
    arn = client.create_infrastructure_configuration(
        name=name, instanceProfileName="p", clientToken=token
    )["infrastructureConfigurationArn"]
    # The same token on another operation is a new request, not a mismatch.
    response = client.update_infrastructure_configuration(
        infrastructureConfigurationArn=arn, instanceProfileName="q", clientToken=token
    )
    assert response["infrastructureConfigurationArn"] == arn


def test_tokens_are_per_region(endpoint):
    token = str(uuid.uuid4())
    name = unique_name("regional")
    arns = {
        make_client(endpoint, region=region).create_infrastructure_configuration(
            name=name, instanceProfileName="p", clientToken=token
        )["infrastructureConfigurationArn"]
        for region in (REGION, "eu-west-1")
    }
    assert len(arns) == 2


def test_a_failed_request_does_not_consume_its_token(client, name):
    token = str(uuid.uuid4())
    create_infra(client, name)
    assert_client_error(
        lambda: client.create_infrastructure_configuration(
            name=name, instanceProfileName="p", clientToken=token
        ),
        "ResourceAlreadyExistsException",
    )
    other = unique_name()
    response = client.create_infrastructure_configuration(
        name=other, instanceProfileName="p", clientToken=token
    )
    assert response["infrastructureConfigurationArn"].endswith("/" + other)


def test_fifty_concurrent_identical_requests_create_one_resource(endpoint, name):
    token = str(uuid.uuid4())
    results: list[dict] = []
    errors: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(50)

    # One client per thread, so that each has its own connection and the requests really
    # overlap on the server. Clients are made here because creating them is not thread-safe.
    worker_clients = [make_client(endpoint) for _ in range(50)]

    def create(worker_client) -> None:
        start.wait()
        try:
            response = worker_client.create_infrastructure_configuration(
                name=name, instanceProfileName="p", clientToken=token
            )
            with lock:
                results.append(strip_metadata(response))
        except BaseException as exc:  # noqa: BLE001 - reported below
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=create, args=(c,)) for c in worker_clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert len(results) == 50
    assert all(r == results[0] for r in results)
    assert count_named(make_client(endpoint), name) == 1
