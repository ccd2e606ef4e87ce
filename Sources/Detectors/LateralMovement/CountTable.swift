extension Dictionary where Value == Int {
    /// Lowers `key`'s count, removing the key at zero (so `count` is the keys with any); true when it did.
    @discardableResult
    mutating func decrementCount(_ key: Key) -> Bool {
        guard let i = index(forKey: key) else { return false }
        if values[i] > 1 { values[i] -= 1; return false }
        remove(at: i)
        return true
    }
}
