import Foundation
import TestSupport
import XCTest
@testable import Analyzers

/// The Public Suffix List's own test vectors (publicsuffix.org `tests/test_psl.txt`, ASCII part) against
/// the real list file, plus a small synthetic list for rule precedence.
final class PublicSuffixListTests: XCTestCase {
    static let bytes = FileManager.default.contents(atPath: TestSupport.data("psl/public_suffix_list.dat")).map { [UInt8]($0) }
    static let list: PublicSuffixList? = bytes.map { PublicSuffixList(bytes: $0) }

    func psl() throws -> PublicSuffixList {
        try XCTUnwrap(PublicSuffixListTests.list, "shared PSL file missing")
    }

    func check(_ psl: PublicSuffixList, _ name: String, _ expected: String?, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(psl.registeredDomain(name), expected, name, file: file, line: line)
    }

    func testOfficialVectors() throws {
        let p = try psl()
        XCTAssertGreaterThan(p.ruleCount, 9000)
        // Unlisted TLD (implicit "*" rule).
        check(p, "example", nil)
        check(p, "example.example", "example.example")
        check(p, "b.example.example", "example.example")
        check(p, "a.b.example.example", "example.example")
        // TLD with only one rule.
        check(p, "biz", nil)
        check(p, "domain.biz", "domain.biz")
        check(p, "b.domain.biz", "domain.biz")
        // TLD with some two-level rules.
        check(p, "com", nil)
        check(p, "example.com", "example.com")
        check(p, "b.example.com", "example.com")
        check(p, "a.b.example.com", "example.com")
        check(p, "uk.com", nil)
        check(p, "example.uk.com", "example.uk.com")
        check(p, "b.example.uk.com", "example.uk.com")
        check(p, "test.ac", "test.ac")
        // TLD with only one (wildcard) rule.
        check(p, "mm", nil)
        check(p, "c.mm", nil)
        check(p, "b.c.mm", "b.c.mm")
        check(p, "a.b.c.mm", "b.c.mm")
        // More complex TLD.
        check(p, "jp", nil)
        check(p, "test.jp", "test.jp")
        check(p, "www.test.jp", "test.jp")
        check(p, "ac.jp", nil)
        check(p, "test.ac.jp", "test.ac.jp")
        check(p, "www.test.ac.jp", "test.ac.jp")
        check(p, "kyoto.jp", nil)
        check(p, "test.kyoto.jp", "test.kyoto.jp")
        check(p, "ide.kyoto.jp", nil)
        check(p, "b.ide.kyoto.jp", "b.ide.kyoto.jp")
        check(p, "a.b.ide.kyoto.jp", "b.ide.kyoto.jp")
        // Wildcard with an exception.
        check(p, "c.kobe.jp", nil)
        check(p, "b.c.kobe.jp", "b.c.kobe.jp")
        check(p, "a.b.c.kobe.jp", "b.c.kobe.jp")
        check(p, "city.kobe.jp", "city.kobe.jp")
        check(p, "www.city.kobe.jp", "city.kobe.jp")
        // TLD with a wildcard rule and exceptions.
        check(p, "ck", nil)
        check(p, "test.ck", nil)
        check(p, "b.test.ck", "b.test.ck")
        check(p, "a.b.test.ck", "b.test.ck")
        check(p, "www.ck", "www.ck")
        check(p, "www.www.ck", "www.ck")
        // US K12.
        check(p, "us", nil)
        check(p, "test.us", "test.us")
        check(p, "www.test.us", "test.us")
        check(p, "ak.us", nil)
        check(p, "test.ak.us", "test.ak.us")
        check(p, "www.test.ak.us", "test.ak.us")
        check(p, "k12.ak.us", nil)
        check(p, "test.k12.ak.us", "test.k12.ak.us")
        check(p, "www.test.k12.ak.us", "test.k12.ak.us")
        // IDN labels in punycode (the list has them in Unicode: 公司.cn, 中国).
        check(p, "xn--85x722f.com.cn", "xn--85x722f.com.cn")
        check(p, "xn--85x722f.xn--55qx5d.cn", "xn--85x722f.xn--55qx5d.cn")
        check(p, "www.xn--85x722f.xn--55qx5d.cn", "xn--85x722f.xn--55qx5d.cn")
        check(p, "shishi.xn--55qx5d.cn", "shishi.xn--55qx5d.cn")
        check(p, "xn--55qx5d.cn", nil)
        check(p, "xn--85x722f.xn--fiqs8s", "xn--85x722f.xn--fiqs8s")
        check(p, "www.xn--85x722f.xn--fiqs8s", "xn--85x722f.xn--fiqs8s")
        check(p, "shishi.xn--fiqs8s", "shishi.xn--fiqs8s")
        check(p, "xn--fiqs8s", nil)
        // Mixed case and a trailing dot.
        check(p, "WwW.Example.COM.", "example.com")
        // Invalid names.
        check(p, ".example.com", nil)
        check(p, "a..example.com", nil)
        check(p, "", nil)
    }

    func testPrivateSectionAndIcannOnly() throws {
        let p = try psl()
        check(p, "foo.github.io", "foo.github.io")
        XCTAssertEqual(p.publicSuffix("foo.github.io"), "github.io")
        let icann = PublicSuffixList(bytes: try XCTUnwrap(Self.bytes), includePrivate: false)
        XCTAssertEqual(icann.registeredDomain("foo.github.io"), "github.io")
        XCTAssertEqual(icann.publicSuffix("foo.github.io"), "io")
    }

    func testRulePrecedenceOnASyntheticList() {
        let p = PublicSuffixList(text: """
        // ===BEGIN ICANN DOMAINS===
        tld
        *.wild.tld
        !keep.wild.tld
        deep.a.tld
        // ===END ICANN DOMAINS===
        """)
        XCTAssertEqual(p.ruleCount, 4)
        XCTAssertEqual(p.publicSuffix("x.y.wild.tld"), "y.wild.tld")
        XCTAssertEqual(p.registeredDomain("x.y.wild.tld"), "x.y.wild.tld")
        XCTAssertEqual(p.publicSuffix("x.keep.wild.tld"), "wild.tld")
        XCTAssertEqual(p.registeredDomain("x.keep.wild.tld"), "keep.wild.tld")
        XCTAssertEqual(p.registeredDomain("b.deep.a.tld"), "b.deep.a.tld")
        XCTAssertEqual(p.registeredDomain("b.a.tld"), "a.tld")
        XCTAssertEqual(p.registeredDomain("other.example"), "other.example")
    }

    func testPunycode() {
        XCTAssertEqual(Punycode.encode(Array("公司".unicodeScalars.map(\.value))).map { String(decoding: $0, as: UTF8.self) }, "55qx5d")
        XCTAssertEqual(Punycode.encode(Array("食狮".unicodeScalars.map(\.value))).map { String(decoding: $0, as: UTF8.self) }, "85x722f")
        XCTAssertEqual(Punycode.encode(Array("bücher".unicodeScalars.map(\.value))).map { String(decoding: $0, as: UTF8.self) }, "bcher-kva")
        XCTAssertEqual(Punycode.encode(Array("中国".unicodeScalars.map(\.value))).map { String(decoding: $0, as: UTF8.self) }, "fiqs8s")
    }
}
