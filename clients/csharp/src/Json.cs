// A small JSON model, reader and writer: enough for the Rendezvous protocol,
// with no dependency beyond the base class library (Unity has no System.Text.Json).
using System;
using System.Collections;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace Rendezvous
{
    /// <summary>The kind of a <see cref="JsonValue"/>.</summary>
    public enum JsonKind
    {
        /// <summary>JSON <c>null</c>.</summary>
        Null,
        /// <summary><c>true</c> or <c>false</c>.</summary>
        Bool,
        /// <summary>A number.</summary>
        Number,
        /// <summary>A string.</summary>
        String,
        /// <summary>An array (<see cref="JsonArray"/>).</summary>
        Array,
        /// <summary>An object (<see cref="JsonObject"/>).</summary>
        Object,
    }

    /// <summary>
    /// A JSON value. Scalars are instances of this class; objects and arrays are
    /// <see cref="JsonObject"/> and <see cref="JsonArray"/>. Strings, numbers and
    /// booleans convert implicitly, so <c>new JsonObject { { "move", 4 } }</c> works.
    /// Accessors never throw on a value of another kind: they return a default.
    /// </summary>
    public class JsonValue
    {
        /// <summary>The JSON <c>null</c> value.</summary>
        public static readonly JsonValue Null = new JsonValue(JsonKind.Null, null);
        /// <summary>The JSON <c>true</c> value.</summary>
        public static readonly JsonValue True = new JsonValue(JsonKind.Bool, true);
        /// <summary>The JSON <c>false</c> value.</summary>
        public static readonly JsonValue False = new JsonValue(JsonKind.Bool, false);

        // A number keeps the text it was read or written as (exact for 64-bit integers).
        private readonly object _value;

        /// <summary>Creates a scalar; used by the derived container types.</summary>
        protected JsonValue(JsonKind kind, object value)
        {
            Kind = kind;
            _value = value;
        }

        /// <summary>What this value is.</summary>
        public JsonKind Kind { get; }

        /// <summary>True for JSON <c>null</c>.</summary>
        public bool IsNull => Kind == JsonKind.Null;

        /// <summary>The string, or null when this is not a string.</summary>
        public string AsString() => Kind == JsonKind.String ? (string)_value : null;

        /// <summary>The boolean, or <paramref name="fallback"/> when this is not a boolean.</summary>
        public bool AsBool(bool fallback = false) => Kind == JsonKind.Bool ? (bool)_value : fallback;

        /// <summary>The number as a double, or <paramref name="fallback"/> when this is not a number.</summary>
        public double AsDouble(double fallback = 0)
        {
            if (Kind != JsonKind.Number) return fallback;
            return double.TryParse((string)_value, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) ? d : fallback;
        }

        /// <summary>The number as a 64-bit integer (truncated), or <paramref name="fallback"/> when this is not a number.</summary>
        public long AsLong(long fallback = 0)
        {
            if (Kind != JsonKind.Number) return fallback;
            if (long.TryParse((string)_value, NumberStyles.Integer, CultureInfo.InvariantCulture, out var l)) return l;
            var d = AsDouble(double.NaN);
            return double.IsNaN(d) || d > long.MaxValue || d < long.MinValue ? fallback : (long)d;
        }

        /// <summary>This value as an object, or null.</summary>
        public JsonObject AsObject() => this as JsonObject;

        /// <summary>This value as an array, or null.</summary>
        public JsonArray AsArray() => this as JsonArray;

        /// <summary>A string value.</summary>
        public static JsonValue From(string value) => value == null ? Null : new JsonValue(JsonKind.String, value);
        /// <summary>A boolean value.</summary>
        public static JsonValue From(bool value) => value ? True : False;
        /// <summary>An integer value.</summary>
        public static JsonValue From(long value) => new JsonValue(JsonKind.Number, value.ToString(CultureInfo.InvariantCulture));

        /// <summary>A number value; NaN and infinities have no JSON form and throw.</summary>
        public static JsonValue From(double value)
        {
            if (double.IsNaN(value) || double.IsInfinity(value)) throw new ArgumentException("JSON has no NaN or infinity", nameof(value));
            return new JsonValue(JsonKind.Number, value.ToString("R", CultureInfo.InvariantCulture));
        }

        /// <summary>Converts a string (null becomes JSON null).</summary>
        public static implicit operator JsonValue(string value) => From(value);
        /// <summary>Converts a boolean.</summary>
        public static implicit operator JsonValue(bool value) => From(value);
        /// <summary>Converts an integer.</summary>
        public static implicit operator JsonValue(int value) => From(value);
        /// <summary>Converts an integer.</summary>
        public static implicit operator JsonValue(long value) => From(value);
        /// <summary>Converts a number.</summary>
        public static implicit operator JsonValue(double value) => From(value);

        /// <summary>
        /// Parses JSON text. Throws <see cref="FormatException"/> for anything
        /// that is not exactly one JSON value (nesting deeper than 256 levels included).
        /// </summary>
        public static JsonValue Parse(string text)
        {
            if (text == null) throw new ArgumentNullException(nameof(text));
            return new JsonReader(text).ReadDocument();
        }

        /// <summary>Serializes this value as compact JSON.</summary>
        public override string ToString()
        {
            var sb = new StringBuilder();
            WriteTo(sb);
            return sb.ToString();
        }

        /// <summary>Appends this value's JSON text.</summary>
        public virtual void WriteTo(StringBuilder sb)
        {
            switch (Kind)
            {
                case JsonKind.Null: sb.Append("null"); break;
                case JsonKind.Bool: sb.Append((bool)_value ? "true" : "false"); break;
                case JsonKind.Number: sb.Append((string)_value); break;
                default: WriteString(sb, (string)_value); break;
            }
        }

        /// <summary>Value equality of scalars (numbers compare by value); containers compare by their JSON text.</summary>
        public override bool Equals(object obj)
        {
            if (!(obj is JsonValue other) || other.Kind != Kind) return false;
            if (Kind == JsonKind.Number) return AsDouble() == other.AsDouble();
            if (Kind == JsonKind.Object || Kind == JsonKind.Array) return ToString() == other.ToString();
            return Equals(_value, other._value);
        }

        /// <inheritdoc/>
        public override int GetHashCode() => Kind == JsonKind.Number ? AsDouble().GetHashCode() : ToString().GetHashCode();

        internal static JsonValue RawNumber(string text) => new JsonValue(JsonKind.Number, text);

        internal static void WriteString(StringBuilder sb, string s)
        {
            sb.Append('"');
            foreach (var c in s)
            {
                switch (c)
                {
                    case '"': sb.Append("\\\""); break;
                    case '\\': sb.Append("\\\\"); break;
                    case '\n': sb.Append("\\n"); break;
                    case '\r': sb.Append("\\r"); break;
                    case '\t': sb.Append("\\t"); break;
                    default:
                        if (c < 0x20 || c == '\u2028' || c == '\u2029') sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                        else sb.Append(c);
                        break;
                }
            }
            sb.Append('"');
        }
    }

    /// <summary>A JSON object: keys in insertion order, each at most once. The indexer returns null for a missing key.</summary>
    public sealed class JsonObject : JsonValue, IEnumerable<KeyValuePair<string, JsonValue>>
    {
        private readonly List<string> _keys = new List<string>();
        private readonly Dictionary<string, JsonValue> _map = new Dictionary<string, JsonValue>();

        /// <summary>An empty object.</summary>
        public JsonObject() : base(JsonKind.Object, null) { }

        /// <summary>Number of keys.</summary>
        public int Count => _keys.Count;

        /// <summary>The keys in order.</summary>
        public IReadOnlyList<string> Keys => _keys;

        /// <summary>Gets the value of a key (null when absent), or sets it (null stores JSON null).</summary>
        public JsonValue this[string key]
        {
            get => _map.TryGetValue(key, out var v) ? v : null;
            set
            {
                if (!_map.ContainsKey(key)) _keys.Add(key);
                _map[key] = value ?? Null;
            }
        }

        /// <summary>Sets a key (collection-initializer form).</summary>
        public void Add(string key, JsonValue value) => this[key] = value;

        /// <summary>Whether the key is present (even with a null value).</summary>
        public bool ContainsKey(string key) => _map.ContainsKey(key);

        /// <summary>Removes a key; true if it was there.</summary>
        public bool Remove(string key)
        {
            if (!_map.Remove(key)) return false;
            _keys.Remove(key);
            return true;
        }

        /// <summary>The string at <paramref name="key"/>, or null.</summary>
        public string GetString(string key) => this[key]?.AsString();
        /// <summary>The boolean at <paramref name="key"/>, or <paramref name="fallback"/>.</summary>
        public bool GetBool(string key, bool fallback = false) => this[key]?.AsBool(fallback) ?? fallback;
        /// <summary>The integer at <paramref name="key"/>, or <paramref name="fallback"/>.</summary>
        public long GetLong(string key, long fallback = 0) => this[key]?.AsLong(fallback) ?? fallback;
        /// <summary>The number at <paramref name="key"/>, or <paramref name="fallback"/>.</summary>
        public double GetDouble(string key, double fallback = 0) => this[key]?.AsDouble(fallback) ?? fallback;
        /// <summary>The object at <paramref name="key"/>, or null.</summary>
        public JsonObject GetObject(string key) => this[key] as JsonObject;
        /// <summary>The array at <paramref name="key"/>, or null.</summary>
        public JsonArray GetArray(string key) => this[key] as JsonArray;

        /// <summary>A deep copy.</summary>
        public JsonObject Clone() => (JsonObject)Parse(ToString());

        /// <inheritdoc/>
        public IEnumerator<KeyValuePair<string, JsonValue>> GetEnumerator()
        {
            foreach (var k in _keys) yield return new KeyValuePair<string, JsonValue>(k, _map[k]);
        }

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

        /// <inheritdoc/>
        public override void WriteTo(StringBuilder sb)
        {
            sb.Append('{');
            for (var i = 0; i < _keys.Count; i++)
            {
                if (i > 0) sb.Append(',');
                WriteString(sb, _keys[i]);
                sb.Append(':');
                _map[_keys[i]].WriteTo(sb);
            }
            sb.Append('}');
        }
    }

    /// <summary>A JSON array.</summary>
    public sealed class JsonArray : JsonValue, IEnumerable<JsonValue>
    {
        private readonly List<JsonValue> _items = new List<JsonValue>();

        /// <summary>An empty array.</summary>
        public JsonArray() : base(JsonKind.Array, null) { }

        /// <summary>An array of the given values.</summary>
        public JsonArray(IEnumerable<JsonValue> items) : this()
        {
            foreach (var item in items) Add(item);
        }

        /// <summary>Number of items.</summary>
        public int Count => _items.Count;

        /// <summary>The item at <paramref name="index"/>.</summary>
        public JsonValue this[int index] => _items[index];

        /// <summary>Appends an item (null stores JSON null).</summary>
        public void Add(JsonValue value) => _items.Add(value ?? Null);

        /// <inheritdoc/>
        public IEnumerator<JsonValue> GetEnumerator() => _items.GetEnumerator();

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

        /// <inheritdoc/>
        public override void WriteTo(StringBuilder sb)
        {
            sb.Append('[');
            for (var i = 0; i < _items.Count; i++)
            {
                if (i > 0) sb.Append(',');
                _items[i].WriteTo(sb);
            }
            sb.Append(']');
        }
    }

    /// <summary>Recursive-descent reader of RFC 8259 JSON.</summary>
    internal sealed class JsonReader
    {
        private const int MaxDepth = 256;
        private readonly string _s;
        private int _i;
        private int _depth;

        internal JsonReader(string text) { _s = text; }

        internal JsonValue ReadDocument()
        {
            var v = ReadValue();
            SkipWhitespace();
            if (_i != _s.Length) throw Error("unexpected text after the value");
            return v;
        }

        private FormatException Error(string what) => new FormatException("invalid JSON at offset " + _i + ": " + what);

        private void SkipWhitespace()
        {
            while (_i < _s.Length && (_s[_i] == ' ' || _s[_i] == '\t' || _s[_i] == '\n' || _s[_i] == '\r')) _i++;
        }

        private JsonValue ReadValue()
        {
            SkipWhitespace();
            if (_i >= _s.Length) throw Error("unexpected end");
            switch (_s[_i])
            {
                case '{': return ReadObject();
                case '[': return ReadArray();
                case '"': return JsonValue.From(ReadString());
                case 't': Expect("true"); return JsonValue.True;
                case 'f': Expect("false"); return JsonValue.False;
                case 'n': Expect("null"); return JsonValue.Null;
                default: return ReadNumber();
            }
        }

        private void Expect(string word)
        {
            if (string.CompareOrdinal(_s, _i, word, 0, word.Length) != 0) throw Error("expected " + word);
            _i += word.Length;
        }

        private void Enter()
        {
            if (++_depth > MaxDepth) throw Error("nesting too deep");
            _i++;
        }

        private JsonObject ReadObject()
        {
            Enter();
            var obj = new JsonObject();
            SkipWhitespace();
            if (_i < _s.Length && _s[_i] == '}') { _i++; _depth--; return obj; }
            while (true)
            {
                SkipWhitespace();
                if (_i >= _s.Length || _s[_i] != '"') throw Error("expected a key");
                var key = ReadString();
                SkipWhitespace();
                if (_i >= _s.Length || _s[_i] != ':') throw Error("expected ':'");
                _i++;
                obj[key] = ReadValue();
                SkipWhitespace();
                if (_i >= _s.Length) throw Error("unexpected end");
                if (_s[_i] == ',') { _i++; continue; }
                if (_s[_i] == '}') { _i++; _depth--; return obj; }
                throw Error("expected ',' or '}'");
            }
        }

        private JsonArray ReadArray()
        {
            Enter();
            var arr = new JsonArray();
            SkipWhitespace();
            if (_i < _s.Length && _s[_i] == ']') { _i++; _depth--; return arr; }
            while (true)
            {
                arr.Add(ReadValue());
                SkipWhitespace();
                if (_i >= _s.Length) throw Error("unexpected end");
                if (_s[_i] == ',') { _i++; continue; }
                if (_s[_i] == ']') { _i++; _depth--; return arr; }
                throw Error("expected ',' or ']'");
            }
        }

        private string ReadString()
        {
            _i++; // opening quote
            var sb = new StringBuilder();
            while (true)
            {
                if (_i >= _s.Length) throw Error("unterminated string");
                var c = _s[_i++];
                if (c == '"') return sb.ToString();
                if (c < 0x20) throw Error("control character in string");
                if (c != '\\') { sb.Append(c); continue; }
                if (_i >= _s.Length) throw Error("unterminated escape");
                var e = _s[_i++];
                switch (e)
                {
                    case '"': sb.Append('"'); break;
                    case '\\': sb.Append('\\'); break;
                    case '/': sb.Append('/'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'n': sb.Append('\n'); break;
                    case 'r': sb.Append('\r'); break;
                    case 't': sb.Append('\t'); break;
                    case 'u':
                        if (_i + 4 > _s.Length || !int.TryParse(_s.Substring(_i, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var code))
                            throw Error("bad \\u escape");
                        sb.Append((char)code);
                        _i += 4;
                        break;
                    default: throw Error("bad escape");
                }
            }
        }

        private JsonValue ReadNumber()
        {
            var start = _i;
            if (_i < _s.Length && _s[_i] == '-') _i++;
            if (_i < _s.Length && _s[_i] == '0') _i++;
            else if (!Digits()) throw Error("unexpected character");
            if (_i < _s.Length && _s[_i] == '.')
            {
                _i++;
                if (!Digits()) throw Error("expected digits after '.'");
            }
            if (_i < _s.Length && (_s[_i] == 'e' || _s[_i] == 'E'))
            {
                _i++;
                if (_i < _s.Length && (_s[_i] == '+' || _s[_i] == '-')) _i++;
                if (!Digits()) throw Error("expected exponent digits");
            }
            return JsonValue.RawNumber(_s.Substring(start, _i - start));
        }

        private bool Digits()
        {
            var start = _i;
            while (_i < _s.Length && _s[_i] >= '0' && _s[_i] <= '9') _i++;
            return _i > start;
        }
    }
}
