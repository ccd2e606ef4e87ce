import CMaxMindDB
import Events
import Foundation
import Logging
import PacketCore
import Synchronization

/// Where the MaxMind databases are and how enrichment behaves (YAML `enrichment:`, `--geoip-city`, `--geoip-asn`).
public struct EnrichmentConfiguration: Sendable, Equatable {
    /// A City or Country database (GeoIP2/GeoLite2): fills `geo.*`.
    public var cityDatabase: String?
    /// An ASN (or ISP) database: fills `as.*`.
    public var asnDatabase: String?
    /// Addresses remembered per worker; the oldest is forgotten beyond it.
    public var cacheSize: Int = 65_536
    /// How often the files are checked for replacement (SIGHUP reloads at once).
    public var reloadCheckSeconds: Double = 1

    public init() {}

    public var isEnabled: Bool { cityDatabase != nil || asnDatabase != nil }
}

/// The databases in use, shared by every worker, swapped as a whole when a file is replaced or on SIGHUP.
///
/// Workers read `generation` (one relaxed atomic load per lookup) and fetch the new handles only when it
/// moved; the swap itself happens on the watcher thread. A database that fails to reload leaves the old
/// one in place and the reason in the log; the same broken file is not retried until it changes again.
public final class GeoDatabases: @unchecked Sendable {
    public let configuration: EnrichmentConfiguration
    let logger: Logger
    let current: Mutex<(city: MaxMindDatabase?, asn: MaxMindDatabase?)>
    let generation = Atomic<UInt64>(0)
    /// Reloads that succeeded / failed (for the stats and the tests).
    public let reloads = Atomic<UInt64>(0)
    public let reloadFailures = Atomic<UInt64>(0)
    private let stopFlag = Atomic<Bool>(false)
    private var failedIdentity: [String: MaxMindDatabase.FileIdentity] = [:]
    private var missingLogged: Set<String> = []
    private var watcher: Thread?
    private var signalSource: (any DispatchSourceSignal)?
    private let reloadRequested = Atomic<Bool>(false)

    static let cityKinds = ["City", "Country", "Enterprise"]
    static let asnKinds = ["ASN", "ISP"]

    /// Opens every configured database; a missing or unreadable one is an error here, at start.
    public init(configuration: EnrichmentConfiguration, logger: Logger) throws(EnrichmentError) {
        self.configuration = configuration
        self.logger = logger
        let city = try configuration.cityDatabase.map { p throws(EnrichmentError) in try MaxMindDatabase(path: p, expecting: GeoDatabases.cityKinds) }
        let asn = try configuration.asnDatabase.map { p throws(EnrichmentError) in try MaxMindDatabase(path: p, expecting: GeoDatabases.asnKinds) }
        current = Mutex((city, asn))
    }

    deinit { stopWatching() }

    func snapshot() -> (UInt64, MaxMindDatabase?, MaxMindDatabase?) {
        current.withLock { c in (generation.load(ordering: .acquiring), c.city, c.asn) }
    }

    /// Checks the files now: reopens any whose identity (inode, size, mtime) changed, or all when `force`.
    public func reloadIfChanged(force: Bool = false) {
        let (_, city, asn) = snapshot()
        var newCity = city, newASN = asn
        var changed = false
        func check(_ db: MaxMindDatabase?, path: String?, kinds: [String]) -> MaxMindDatabase? {
            guard let path else { return db }
            guard let id = MaxMindDatabase.FileIdentity(path: path) else {
                if missingLogged.insert(path).inserted {
                    logger.error("GeoIP database missing; keeping the loaded one", metadata: ["path": "\(path)"])
                }
                return db
            }
            if !force {
                if let db, db.fileIdentity == id { return db }
                if failedIdentity[path] == id { return db }
            }
            do {
                let fresh = try MaxMindDatabase(path: path, expecting: kinds)
                failedIdentity[path] = nil
                missingLogged.remove(path)
                changed = true
                logger.info("GeoIP database reloaded", metadata: ["path": "\(path)", "type": "\(fresh.databaseType)"])
                return fresh
            } catch {
                failedIdentity[path] = id
                reloadFailures.add(1, ordering: .relaxed)
                logger.error("GeoIP database reload failed; keeping the loaded one", metadata: ["path": "\(path)", "error": "\(error.description)"])
                return db
            }
        }
        newCity = check(city, path: configuration.cityDatabase, kinds: GeoDatabases.cityKinds)
        newASN = check(asn, path: configuration.asnDatabase, kinds: GeoDatabases.asnKinds)
        guard changed else { return }
        current.withLock { c in
            c = (newCity, newASN)
            generation.add(1, ordering: .releasing)
        }
        reloads.add(1, ordering: .relaxed)
    }

    /// Starts the watcher thread (file replacement, checked every `reloadCheckSeconds`) and the SIGHUP handler.
    public func startWatching() {
        guard watcher == nil else { return }
        HangupSignal.prepare()
        let src = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        src.setEventHandler { [weak self] in self?.reloadRequested.store(true, ordering: .relaxed) }
        src.resume()
        signalSource = src
        let interval = max(0.05, configuration.reloadCheckSeconds)
        let t = Thread { [weak self] in
            var waited = 0.0
            while let s = self, !s.stopFlag.load(ordering: .relaxed) {
                usleep(50_000)
                waited += 0.05
                let forced = s.reloadRequested.exchange(false, ordering: .relaxed)
                if forced { s.logger.info("SIGHUP: reloading GeoIP databases") }
                if forced || waited >= interval {
                    waited = 0
                    s.reloadIfChanged(force: forced)
                }
            }
        }
        t.name = "sensor-geoip-watch"
        watcher = t
        t.start()
    }


    public func stopWatching() {
        stopFlag.store(true, ordering: .relaxed)
        signalSource?.cancel()
        signalSource = nil
        watcher = nil
    }
}

/// Writes `geo.*` and `as.*` for public addresses, from the shared databases, through a bounded cache.
///
/// One per emitter (pipeline worker), so the cache is not locked. Private, loopback, link-local,
/// multicast, documentation and other reserved addresses are skipped: no database knows them and a
/// lookup would only cost time. The cache keeps the rendered JSON members per address (or "nothing
/// known"), evicts the oldest entry when full and counts evictions; it is emptied when the databases
/// change.
public final class GeoEnricher: EventEnricher {
    public let databases: GeoDatabases
    let capacity: Int
    private var generation: UInt64 = .max
    private var city: MaxMindDatabase?
    private var asn: MaxMindDatabase?
    private var cache: [IPAddress: [UInt8]] = [:]
    /// Insertion order for oldest-first eviction (a ring over `capacity` slots).
    private var order: [IPAddress] = []
    private var orderHead = 0
    private var scratch = JSONWriter(capacity: 512)

    public private(set) var hits: UInt64 = 0
    public private(set) var misses: UInt64 = 0
    public private(set) var evictions: UInt64 = 0
    public private(set) var skipped: UInt64 = 0
    public private(set) var lookupErrors: UInt64 = 0
    private var lastErrorLogged: UInt64 = 0

    public init(databases: GeoDatabases) {
        self.databases = databases
        self.capacity = max(16, databases.configuration.cacheSize)
        cache.reserveCapacity(min(capacity, 1 << 16))
    }

    /// Addresses no GeoIP database describes (IANA special-purpose registries).
    public static let reserved = NetworkSet([
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
        "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32", "fc00::/7",
        "fe80::/10", "ff00::/8",
    ].compactMap(IPNetwork.init))

    public func enrich(_ address: IPAddress, into writer: inout JSONWriter) {
        let g = databases.generation.load(ordering: .relaxed)
        if g != generation { refresh() }
        if let hit = cache[address] {
            hits &+= 1
            hit.withUnsafeBytes { writer.appendMembers($0) }
            return
        }
        if GeoEnricher.reserved.contains(address) {
            skipped &+= 1
            return
        }
        misses &+= 1
        let rendered = render(address)
        insert(address, rendered)
        rendered.withUnsafeBytes { writer.appendMembers($0) }
    }

    private func refresh() {
        let (g, c, a) = databases.snapshot()
        generation = g
        city = c
        asn = a
        cache.removeAll(keepingCapacity: true)
        order.removeAll(keepingCapacity: true)
        orderHead = 0
    }

    private func insert(_ address: IPAddress, _ rendered: [UInt8]) {
        if order.count < capacity {
            order.append(address)
        } else {
            cache.removeValue(forKey: order[orderHead])
            evictions &+= 1
            order[orderHead] = address
            orderHead = (orderHead + 1) % capacity
        }
        cache[address] = rendered
    }

    static let countryISO = KeyPath("country", "iso_code")
    static let countryName = KeyPath("country", "names", "en")
    static let cityName = KeyPath("city", "names", "en")
    static let continentName = KeyPath("continent", "names", "en")
    static let regionISO = KeyPath("subdivisions", "0", "iso_code")
    static let regionName = KeyPath("subdivisions", "0", "names", "en")
    static let latitude = KeyPath("location", "latitude")
    static let longitude = KeyPath("location", "longitude")
    static let asNumber = KeyPath("autonomous_system_number")
    static let asOrganization = KeyPath("autonomous_system_organization")

    /// `"geo":{…},"as":{…}` for one address (empty when the databases know nothing of it).
    func render(_ address: IPAddress) -> [UInt8] {
        scratch.reset()
        scratch.beginObject()
        let onError: (EnrichmentError) -> Void = { [self] e in
            lookupErrors &+= 1
            if lookupErrors == 1 || lookupErrors >= lastErrorLogged &* 2 {
                lastErrorLogged = lookupErrors
                databases.logger.warning("GeoIP lookup failed", metadata: ["error": "\(e.description)", "failures": "\(lookupErrors)"])
            }
        }
        if let city {
            city.lookup(address, { e in
                let iso = GeoEnricher.countryISO.string(&e), country = GeoEnricher.countryName.string(&e)
                let cityName = GeoEnricher.cityName.string(&e), continent = GeoEnricher.continentName.string(&e)
                let regionISO = GeoEnricher.regionISO.string(&e), regionName = GeoEnricher.regionName.string(&e)
                let lat = GeoEnricher.latitude.double(&e), lon = GeoEnricher.longitude.double(&e)
                guard iso != nil || country != nil || cityName != nil || continent != nil || lat != nil else { return }
                scratch.beginObject("geo")
                if let continent { scratch.field("continent_name", continent) }
                if let iso { scratch.field("country_iso_code", iso) }
                if let country { scratch.field("country_name", country) }
                if let regionISO, let iso { scratch.field("region_iso_code", iso + "-" + regionISO) }
                if let regionName { scratch.field("region_name", regionName) }
                if let cityName { scratch.field("city_name", cityName) }
                if let lat, let lon {
                    scratch.beginObject("location"); scratch.field("lat", lat); scratch.field("lon", lon); scratch.endObject()
                }
                scratch.endObject()
            }, onError: onError)
        }
        if let asn {
            asn.lookup(address, { e in
                let number = GeoEnricher.asNumber.unsigned(&e), org = GeoEnricher.asOrganization.string(&e)
                guard number != nil || org != nil else { return }
                scratch.beginObject("as")
                if let number { scratch.field("number", number) }
                if let org { scratch.beginObject("organization"); scratch.field("name", org); scratch.endObject() }
                scratch.endObject()
            }, onError: onError)
        }
        scratch.endObject()
        // Keep the members only: drop the `{` and `}` of the scratch object.
        let b = scratch.bytes
        return b.count > 2 ? Array(b[1..<(b.count - 1)]) : []
    }
}
