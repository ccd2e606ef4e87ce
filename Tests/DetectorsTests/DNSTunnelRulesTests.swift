import ConfigKit
import TestSupport
import XCTest
@testable import Detectors

final class DNSTunnelRulesTests: XCTestCase {
    func testDefaultsParseFromEmptyDocument() throws {
        let r = try DNSTunnelRules.parse(text: "enabled: true\n")
        XCTAssertEqual(r, DNSTunnelRules())
    }

    func testErrorsCarryLineNumbers() {
        let text = """
        window: 5m
        score:
          entropy: {from: 4.5, to: 3.0, weight: 25}
          colour: {from: 1, to: 2, weight: 3}
        allowlist:
          - "bad..name"
        """
        do {
            _ = try DNSTunnelRules.parse(text: text, file: "t.yaml")
            XCTFail("expected issues")
        } catch {
            let lines = error.issues.map(\.line).sorted()
            XCTAssertEqual(error.issues.count, 3, error.description)
            // Yams marks are 1-based: the entropy mapping is on line 3, colour on 4, the bad name on 6.
            XCTAssertEqual(lines, [3, 4, 6], error.description)
        }
    }

    func testSearchSuffixAnswerPayloadAndDescriptiveNameKeys() throws {
        let r = try DNSTunnelRules.parse(text: """
        min_unique_subdomains: 6
        score:
          answer_payload: {from: 50, to: 200, weight: 12}
          descriptive_names: {from: 0.4, to: 0.9, weight: 30}
        single_name: {max_word_share: 0.5}
        search_suffixes: [Corp.Example.COM., "*.svc.cluster.local"]
        learn_search_suffixes: {enabled: false, window: 30s, evidence: 3}
        """)
        XCTAssertEqual(r.minUniqueSubdomains, 6)
        XCTAssertEqual(r.answerPayload, DNSTunnelRules.Feature(from: 50, to: 200, weight: 12))
        XCTAssertEqual(r.descriptiveNames, DNSTunnelRules.Feature(from: 0.4, to: 0.9, weight: 30))
        XCTAssertEqual(r.singleNameMaxWordShare, 0.5)
        XCTAssertEqual(r.searchSuffixes, ["corp.example.com", "svc.cluster.local"])
        XCTAssertFalse(r.learnSearchSuffixes)
        XCTAssertEqual(r.searchSuffixWindowSeconds, 30)
        XCTAssertEqual(r.searchSuffixEvidence, 3)
        XCTAssertThrowsError(try DNSTunnelRules.parse(text: "search_suffixes: [\"a..b\"]\n"))
    }

    func testRepositoryRulesFileIsValid() throws {
        let path = TestSupport.repositoryRoot.appendingPathComponent("Rules/dns-tunneling.yaml").path
        let rules = try DNSTunnelRules.load(path: path)
        XCTAssertTrue(rules.enabled)
        XCTAssertTrue(rules.allowlist.contains("in-addr.arpa"))
        XCTAssertGreaterThan(rules.alertScore, 0)
    }

    func testFeaturePoints() {
        let f = DNSTunnelRules.Feature(from: 10, to: 20, weight: 30)
        XCTAssertEqual(f.points(5), 0)
        XCTAssertEqual(f.points(15), 15)
        XCTAssertEqual(f.points(25), 30)
    }
}
