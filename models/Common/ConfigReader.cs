using System.Text.Json;
using System.Text.Json.Nodes;

namespace Hub.Models;

/// <summary>Typed access to HF config fields; every failure is a <see cref="ConfigException"/> naming file and field.</summary>
public sealed class ConfigReader
{
    /// <summary>The config object.</summary>
    public JsonObject Json { get; }
    /// <summary>The config file path.</summary>
    public string Path { get; }

    /// <summary>Wraps <paramref name="json"/> read from <paramref name="path"/>.</summary>
    public ConfigReader(JsonObject json, string path) { Json = json; Path = path; }

    /// <summary>Loads and parses a JSON config file.</summary>
    public static JsonObject Load(string path)
    {
        if (!File.Exists(path)) throw new ModelFileNotFoundException(path, "every model folder needs its configuration file");
        try { return JsonNode.Parse(File.ReadAllText(path))?.AsObject() ?? throw new JsonException("empty document"); }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        { throw new ConfigException(path, "(document)", $"not a JSON object: {e.Message}", e); }
    }

    /// <summary>True when the field is present and not null.</summary>
    public bool Has(string field) => Json[field] is not null;

    /// <summary>A required integer.</summary>
    public int Int(string field) => Json[field] is JsonNode n ? ToInt(field, n) : throw Missing(field);
    /// <summary>An optional integer.</summary>
    public int? IntOrNull(string field) => Json[field] is JsonNode n ? ToInt(field, n) : null;
    /// <summary>An integer with a default.</summary>
    public int Int(string field, int def) => IntOrNull(field) ?? def;
    /// <summary>A required float.</summary>
    public float Float(string field) => Json[field] is JsonNode n ? ToFloat(field, n) : throw Missing(field);
    /// <summary>A float with a default.</summary>
    public float Float(string field, float def) => Json[field] is JsonNode n ? ToFloat(field, n) : def;
    /// <summary>A boolean with a default.</summary>
    public bool Bool(string field, bool def)
    {
        if (Json[field] is not JsonNode n) return def;
        try { return n.GetValue<bool>(); } catch (Exception e) when (e is InvalidOperationException or FormatException) { throw Bad(field, "a boolean", n, e); }
    }
    /// <summary>A string or null.</summary>
    public string? String(string field)
    {
        if (Json[field] is not JsonNode n) return null;
        try { return n.GetValue<string>(); } catch (Exception e) when (e is InvalidOperationException or FormatException) { throw Bad(field, "a string", n, e); }
    }
    /// <summary>One or many integers (e.g. <c>eos_token_id</c>), empty when absent.</summary>
    public int[] Ints(string field) => Json[field] switch
    {
        null => Array.Empty<int>(),
        JsonArray a => a.Select(x => ToInt(field, x!)).ToArray(),
        JsonNode n => new[] { ToInt(field, n) },
    };

    /// <summary>A positive required integer.</summary>
    public int Positive(string field)
    {
        var v = Int(field);
        return v > 0 ? v : throw new ConfigException(Path, field, $"must be positive, got {v}");
    }

    /// <summary>A config error for <paramref name="field"/>.</summary>
    public ConfigException Error(string field, string message) => new(Path, field, message);

    private ConfigException Missing(string field) => new(Path, field, "required field is missing; the config does not describe this architecture completely");

    private int ToInt(string field, JsonNode n)
    {
        try
        {
            if (n.GetValueKind() == JsonValueKind.Number)
            {
                // Parsed numbers read as double; numbers built in code (JsonValue<int>) only as their own type.
                var d = n is JsonValue v && v.TryGetValue<double>(out var dv) ? dv
                    : n is JsonValue v2 && v2.TryGetValue<long>(out var lv) ? lv
                    : n is JsonValue v3 && v3.TryGetValue<int>(out var iv) ? iv
                    : n.GetValue<double>();
                if (d == Math.Floor(d) && d >= int.MinValue && d <= int.MaxValue) return (int)d;
            }
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException) { throw Bad(field, "an integer", n, e); }
        throw Bad(field, "an integer", n, null);
    }

    private float ToFloat(string field, JsonNode n)
    {
        try
        {
            if (n is JsonValue v)
            {
                if (v.TryGetValue<double>(out var d)) return (float)d;
                if (v.TryGetValue<float>(out var f)) return f;
                if (v.TryGetValue<long>(out var l)) return l;
                if (v.TryGetValue<int>(out var i)) return i;
            }
            return (float)n.GetValue<double>();
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException) { throw Bad(field, "a number", n, e); }
    }

    private ConfigException Bad(string field, string what, JsonNode n, Exception? inner) =>
        new(Path, field, $"must be {what}, got {n.ToJsonString()}", inner);
}
