namespace Hub.Mirror;

/// <summary>Assembly marker.</summary>
public static class AssemblyMarkerHubMirror { }
