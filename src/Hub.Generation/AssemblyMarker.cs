namespace Hub.Generation;

/// <summary>Assembly marker.</summary>
public static class AssemblyMarkerHubGeneration { }
