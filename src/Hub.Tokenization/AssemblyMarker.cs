namespace Hub.Tokenization;

/// <summary>Assembly marker.</summary>
public static class AssemblyMarkerHubTokenization { }
