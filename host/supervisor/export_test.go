package supervisor

// folderPacks is reached through Options.PluginDir; the folder tests call
// it directly under this name.
var FolderPacks = folderPacks
