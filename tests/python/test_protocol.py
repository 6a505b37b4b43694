"""The wire protocol as any AWS client sees it: the error format (status, X-Amzn-ErrorType,
x-amzn-RequestId, a JSON body with `message`), what the HTTP front refuses before an operation
runs, the mapping of error codes to boto3's exception classes, and the validation messages the
server writes from the model's constraints.

Raw `http.client` requests show the exact bytes; boto3 with parameter validation disabled lets
the server's own validation be reached for rules boto3 would otherwise check client-side.
"""

from __future__ import annotations

import json
import uuid

import pytest

from kiln_testlib import (
    arn_prefix,
    assert_client_error,
    create_infra,
    raw_exchange,
    raw_request,
    raw_request_streaming_body,
    sign,
    unique_name,
)

UUID_LENGTH = 36


def assert_error_response(
    status: int, headers: dict[str, str], body: bytes, want_status: int, want_code: str
) -> str:
    """Checks the AWS error format and returns the message."""
    assert status == want_status, body
    assert headers.get("x-amzn-errortype") == want_code, headers
    request_id = headers.get("x-amzn-requestid", "")
    assert len(request_id) == UUID_LENGTH and uuid.UUID(request_id), headers
    assert headers.get("content-type", "").startswith("application/json")
    document = json.loads(body)
    assert isinstance(document.get("message"), str) and document["message"], document
    return document["message"]


# --- The HTTP front ---------------------------------------------------------------------------


def test_unknown_path_is_a_client_error_naming_the_path(endpoint):
    message = assert_error_response(
        *raw_request(endpoint, "POST", "/NoSuchOperation", {}), 400, "ClientException"
    )
    assert "/NoSuchOperation" in message


def test_wrong_method_names_the_method_the_path_takes(endpoint):
    message = assert_error_response(
        *raw_request(endpoint, "GET", "/CreateInfrastructureConfiguration"),
        400,
        "ClientException",
    )
    assert "PUT" in message and "CreateInfrastructureConfiguration" in message


def test_malformed_json_is_refused(endpoint):
    message = assert_error_response(
        *raw_request(endpoint, "POST", "/ListInfrastructureConfigurations", '{"maxResults": '),
        400,
        "InvalidRequestException",
    )
    assert "JSON" in message


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', "42", "null"])
def test_a_body_that_is_not_a_json_object_is_refused(endpoint, body):
    message = assert_error_response(
        *raw_request(endpoint, "POST", "/ListInfrastructureConfigurations", body),
        400,
        "InvalidRequestException",
    )
    assert "JSON object" in message


def test_a_body_over_one_mebibyte_is_refused_with_413(endpoint):
    status, headers, body = raw_request_streaming_body(
        endpoint, "PUT", "/CreateInfrastructureConfiguration", 1536 * 1024
    )
    message = assert_error_response(status, headers, body, 413, "RequestEntityTooLargeException")
    assert "limit" in message
    # The rest of the body is not read, so the connection cannot carry another request.
    assert headers.get("connection") == "close"


def test_the_server_still_answers_after_a_refused_large_body(endpoint, client):
    raw_request_streaming_body(endpoint, "PUT", "/CreateInfrastructureConfiguration", 1536 * 1024)
    assert "infrastructureConfigurationSummaryList" in client.list_infrastructure_configurations()


def test_empty_body_counts_as_an_empty_object(endpoint):
    status, headers, body = raw_request(endpoint, "POST", "/ListInfrastructureConfigurations", "")
    assert status == 200, body
    assert "infrastructureConfigurationSummaryList" in json.loads(body)


def test_success_carries_the_request_id_in_header_and_body(endpoint):
    status, headers, body = raw_request(endpoint, "POST", "/ListInfrastructureConfigurations", {})
    assert status == 200
    document = json.loads(body)
    assert document["requestId"] == headers["x-amzn-requestid"]
    assert len(document["requestId"]) == UUID_LENGTH


def test_every_request_gets_its_own_request_id(endpoint):
    ids = {
        raw_request(endpoint, "POST", "/ListInfrastructureConfigurations", {})[1]["x-amzn-requestid"]
        for _ in range(5)
    }
    assert len(ids) == 5


def test_get_members_travel_in_the_query_string(endpoint, client):
    arn = create_infra(client)
    quoted = arn.replace(":", "%3A").replace("/", "%2F")
    status, _, body = raw_request(
        endpoint, "GET", f"/GetInfrastructureConfiguration?infrastructureConfigurationArn={quoted}"
    )
    assert status == 200, body
    assert json.loads(body)["infrastructureConfiguration"]["arn"] == arn


# --- Heads the HTTP layer refuses: still the AWS format, and the connection closes ----------


def refused_head(endpoint: str, data: bytes, want_status: int, want_code: str) -> str:
    """Sends `data` raw; the one answer must be the AWS error format with `Connection: close`,
    and the server must then close the connection. Returns the message."""
    (answer,), closed = raw_exchange(endpoint, data)
    message = assert_error_response(*answer, want_status, want_code)
    assert answer[1].get("connection") == "close", answer[1]
    assert closed, "the server kept the connection open after refusing its head"
    return message


def test_a_40_kib_header_is_431_in_the_aws_format(endpoint):
    data = b"POST /ListImages HTTP/1.1\r\nHost: kiln\r\nX-Big: " + b"a" * 40 * 1024 + b"\r\n\r\n"
    message = refused_head(endpoint, data, 431, "RequestHeaderFieldsTooLargeException")
    assert "16384 bytes" in message


def test_a_100_kib_uri_is_414_in_the_aws_format(endpoint):
    data = b"GET /GetImage?imageBuildVersionArn=" + b"a" * 100 * 1024 + b" HTTP/1.1\r\nHost: kiln\r\n\r\n"
    message = refused_head(endpoint, data, 414, "RequestUriTooLongException")
    assert "8192 bytes" in message


def test_too_many_header_fields_are_431(endpoint):
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(150))
    message = refused_head(
        endpoint,
        b"POST /ListImages HTTP/1.1\r\nHost: kiln\r\n" + fields + b"\r\n",
        431,
        "RequestHeaderFieldsTooLargeException",
    )
    assert "100 header fields" in message


@pytest.mark.parametrize(
    "head, fragment",
    [
        (b"X-No-Colon-Here\r\n", "has no ':'"),
        (b"X-Nul: a\x00b\r\n", "control character 0x00"),
        (b"Bad Name: v\r\n", "not a valid header name"),
        (b"Content-Length: ten\r\n", "Content-Length 'ten'"),
        (b"Content-Length: 2\r\nContent-Length: 3\r\n", "different values"),
        (b"Transfer-Encoding: gzip\r\n", "chunked"),
    ],
)
def test_a_malformed_header_is_400_naming_the_problem(endpoint, head, fragment):
    data = b"POST /ListImages HTTP/1.1\r\nHost: kiln\r\n" + head + b"\r\n"
    message = refused_head(endpoint, data, 400, "ClientException")
    assert fragment in message


def test_a_malformed_request_line_is_400(endpoint):
    message = refused_head(endpoint, b"GET / HTTP/7.1\r\nHost: kiln\r\n\r\n", 400, "ClientException")
    assert "request line" in message


def signed_head(endpoint: str, method: str, path: str, body: bytes, version: str = "HTTP/1.1") -> bytes:
    """A request head (and body) signed like botocore signs, so that it gets past the signature
    check to the routing the test is about."""
    headers = sign(endpoint, method, path, body, {"Content-Length": str(len(body))})
    # botocore signs the URL's host; the HTTP client would send it as Host.
    headers["Host"] = endpoint.split("://", 1)[1]
    lines = [f"{method} {path} {version}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_a_refused_head_after_a_pipelined_request_is_answered_after_it(endpoint):
    first = signed_head(endpoint, "POST", "/NoSuchOperation", b"{}")
    second = b"POST /ListImages HTTP/1.1\r\nHost: kiln\r\nX-Broken\r\n\r\n"
    (one, two), closed = raw_exchange(endpoint, first + second, responses=2)
    assert "/NoSuchOperation" in assert_error_response(*one, 400, "ClientException")
    assert one[1].get("connection") != "close"
    assert "has no ':'" in assert_error_response(*two, 400, "ClientException")
    assert two[1].get("connection") == "close"
    assert closed


def test_a_bad_chunked_body_is_400_and_closes(endpoint):
    data = (
        b"POST /ListInfrastructureConfigurations HTTP/1.1\r\nHost: kiln\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n"
    )
    message = refused_head(endpoint, data, 400, "ClientException")
    assert "body" in message


def test_an_http_1_0_request_is_told_the_connection_closes(endpoint):
    (answer,), closed = raw_exchange(
        endpoint, signed_head(endpoint, "POST", "/NoSuchOperation", b"", version="HTTP/1.0")
    )
    assert_error_response(*answer, 400, "ClientException")
    assert answer[1].get("connection") == "close"
    assert closed


# --- Error codes become boto3's exception classes --------------------------------------------


def test_not_implemented_operation_is_a_client_exception_naming_it(client):
    with pytest.raises(client.exceptions.ClientException) as info:
        client.get_marketplace_resource(
            resourceType="COMPONENT_DATA",
            resourceArn="arn:aws:imagebuilder:us-east-1:aws-marketplace:component/x/1.0.0/1",
        )
    assert "GetMarketplaceResource" in info.value.response["Error"]["Message"]
    assert "not implemented" in info.value.response["Error"]["Message"]
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_invalid_request_maps_to_its_exception_class(raw_client):
    with pytest.raises(raw_client.exceptions.InvalidRequestException):
        raw_client.create_infrastructure_configuration(name="x", instanceProfileName="p")


def test_not_found_maps_to_its_exception_class_with_404(client):
    missing = f"{arn_prefix()}:infrastructure-configuration/{unique_name('missing')}"
    with pytest.raises(client.exceptions.ResourceNotFoundException) as info:
        client.get_infrastructure_configuration(infrastructureConfigurationArn=missing)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert missing in info.value.response["Error"]["Message"]


def test_already_exists_maps_to_its_exception_class(client, name):
    create_infra(client, name)
    with pytest.raises(client.exceptions.ResourceAlreadyExistsException):
        create_infra(client, name)


def test_request_id_reaches_boto3_response_metadata(client):
    response = client.list_infrastructure_configurations()
    assert response["ResponseMetadata"]["RequestId"] == response["requestId"]


# --- Validation messages name the member and the rule ----------------------------------------


def test_pattern_violation_names_member_value_and_rule(raw_client):
    assert_client_error(
        lambda: raw_client.create_infrastructure_configuration(name="x", instanceProfileName="p"),
        "InvalidRequestException",
        "Value 'x' at 'name'",
        "regular expression pattern",
    )


def test_enum_violation_lists_the_allowed_values(raw_client):
    assert_client_error(
        lambda: raw_client.create_image_pipeline(
            name=unique_name("pipe"),
            imageRecipeArn=f"{arn_prefix()}:image-recipe/r/1.0.0",
            infrastructureConfigurationArn=f"{arn_prefix()}:infrastructure-configuration/i",
            status="ON",
        ),
        "InvalidRequestException",
        "Value 'ON' at 'status'",
        "enum value set: [DISABLED, ENABLED]",
    )


def test_range_violation_names_the_nested_member_and_bound(raw_client):
    assert_client_error(
        lambda: raw_client.create_image_pipeline(
            name=unique_name("pipe"),
            imageRecipeArn=f"{arn_prefix()}:image-recipe/r/1.0.0",
            infrastructureConfigurationArn=f"{arn_prefix()}:infrastructure-configuration/i",
            imageTestsConfiguration={"timeoutMinutes": 5},
        ),
        "InvalidRequestException",
        "at 'imageTestsConfiguration.timeoutMinutes'",
        "greater than or equal to 60",
    )


def test_range_violation_sent_raw_over_http(endpoint):
    message = assert_error_response(
        *raw_request(
            endpoint,
            "PUT",
            "/CreateImagePipeline",
            {
                "name": unique_name("pipe"),
                "clientToken": str(uuid.uuid4()),
                "imageRecipeArn": f"{arn_prefix()}:image-recipe/r/1.0.0",
                "infrastructureConfigurationArn": f"{arn_prefix()}:infrastructure-configuration/i",
                "imageTestsConfiguration": {"timeoutMinutes": 5},
            },
        ),
        400,
        "InvalidRequestException",
    )
    assert "imageTestsConfiguration.timeoutMinutes" in message


def test_aws_prefixed_tag_key_is_refused(raw_client):
    assert_client_error(
        lambda: raw_client.create_infrastructure_configuration(
            name=unique_name("infra"), instanceProfileName="p", tags={"aws:foo": "bar"}
        ),
        "InvalidRequestException",
        "tags['aws:foo'] (key)",
    )


def test_missing_required_member_is_named(raw_client):
    assert_client_error(
        lambda: raw_client.create_infrastructure_configuration(name=unique_name("infra")),
        "InvalidRequestException",
        "at 'instanceProfileName'",
        "must not be null",
    )


def test_wrong_json_type_is_named(endpoint):
    message = assert_error_response(
        *raw_request(
            endpoint,
            "PUT",
            "/CreateInfrastructureConfiguration",
            {"name": 5, "instanceProfileName": "p", "clientToken": "t-" + uuid.uuid4().hex},
        ),
        400,
        "InvalidRequestException",
    )
    assert "at 'name'" in message and "string" in message


def test_every_violation_is_reported_together(raw_client):
    exc = assert_client_error(
        lambda: raw_client.create_infrastructure_configuration(name="x", description=""),
        "InvalidRequestException",
    )
    message = exc.response["Error"]["Message"]
    assert "3 validation errors" in message, message
    for member in ("'name'", "'description'", "'instanceProfileName'"):
        assert member in message


def test_missing_required_query_member_is_named(endpoint):
    message = assert_error_response(
        *raw_request(endpoint, "GET", "/GetInfrastructureConfiguration"),
        400,
        "InvalidRequestException",
    )
    assert "infrastructureConfigurationArn" in message
